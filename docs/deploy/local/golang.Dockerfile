# A Go build image made without a registry, for docs/deploy/Dockerfile's GO_IMAGE: Debian's C
# toolchain (cmpool links the PostgreSQL grammar through cgo) on the local Debian base, and
# from the build context (build.sh makes it) this machine's Go distribution (go/) and CA
# bundle (ca-certificates.crt), so that module downloads trust what this machine trusts.
ARG BASE_IMAGE=cmpool-test/debian:bookworm
FROM ${BASE_IMAGE}
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOTOOLCHAIN=local
RUN go version
