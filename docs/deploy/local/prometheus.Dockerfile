# A stand-in for the prom/prometheus image, made without a registry from Debian's prometheus
# package on the local Debian base: the same configuration path, data directory and command.
ARG BASE_IMAGE=cmpool-test/debian:bookworm
FROM ${BASE_IMAGE}
RUN set -eux; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /prometheus /etc/prometheus; \
    chown prometheus:prometheus /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
