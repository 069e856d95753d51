#!/bin/sh
# Builds the images of docs/deploy/docker-compose.yml where no image registry is reachable:
#
#   - cmpool's image (docs/deploy/Dockerfile), on a Go build image made locally
#     (golang.Dockerfile: the local Debian base of integration/container/image/build.sh,
#     Debian's gcc, and this machine's Go distribution), with scratch as the runtime image;
#   - stand-ins for haproxy and prom/prometheus from Debian's packages (haproxy.Dockerfile,
#     prometheus.Dockerfile); PostgreSQL is integration/container/image's.
#
#   docs/deploy/local/build.sh            # cmpool:dev, stamped with VERSION (default: dev)
#
# Settings (environment): VERSION, IMAGE (cmpool:dev), GO_IMAGE (cmpool-test/golang:GO
# version), BASE_IMAGE (cmpool-test/debian:bookworm). Every image but cmpool's is kept when
# present; cmpool's is built from the working tree each time.
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
goroot=$(go env GOROOT)
gover=$(go env GOVERSION)
VERSION=${VERSION:-dev}
IMAGE=${IMAGE:-cmpool:dev}
GO_IMAGE=${GO_IMAGE:-cmpool-test/golang:${gover#go}}
BASE_IMAGE=${BASE_IMAGE:-cmpool-test/debian:bookworm}

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
	"$root/integration/container/image/build.sh"
fi
if docker image inspect "$GO_IMAGE" >/dev/null 2>&1; then
	echo "build.sh: $GO_IMAGE is present"
else
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	cp -al "$goroot" "$ctx/go" 2>/dev/null || cp -a "$goroot" "$ctx/go"
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
	docker build -q --network=host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$GO_IMAGE" \
		-f "$root/docs/deploy/local/golang.Dockerfile" "$ctx" >/dev/null
	rm -rf "$ctx"
	trap - EXIT
	echo "build.sh: built $GO_IMAGE"
fi
for name in haproxy prometheus; do
	if docker image inspect "cmpool-test/$name:local" >/dev/null 2>&1; then
		echo "build.sh: cmpool-test/$name:local is present"
	else
		docker build -q --network=host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "cmpool-test/$name:local" \
			-f "$root/docs/deploy/local/$name.Dockerfile" "$root/docs/deploy/local" >/dev/null
		echo "build.sh: built cmpool-test/$name:local"
	fi
done
# The build downloads modules from the Go module proxy through the host's network.
docker build -q --network=host --build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUNTIME_IMAGE=scratch \
	--build-arg VERSION="$VERSION" -t "$IMAGE" -f "$root/docs/deploy/Dockerfile" "$root" >/dev/null
echo "build.sh: built $IMAGE ($(docker run --rm "$IMAGE" version))"
