#!/bin/sh
# Builds the PostgreSQL image of the container backend without any image registry:
#
#   1. a Debian base image, made with debootstrap --variant=minbase and docker import;
#   2. a PostgreSQL image on it (Dockerfile), with Debian's postgresql-$PG_MAJOR and an
#      entrypoint (docker-entrypoint.sh) that honours the official postgres image's contract.
#
# An image that is already present is kept; FORCE=1 rebuilds both. Run as root (debootstrap
# needs it), from anywhere:
#
#   integration/container/image/build.sh
#   CMPOOL_TEST_BACKEND=container CMPOOL_TEST_IMAGE=cmpool-test/postgres:15 go test ./integration
#
# Settings (environment): SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian),
# PG_MAJOR (15), BASE_IMAGE (cmpool-test/debian:$SUITE), PG_IMAGE (cmpool-test/postgres:$PG_MAJOR).
set -eu
cd "$(dirname "$0")"

SUITE=${SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PG_MAJOR=${PG_MAJOR:-15}
BASE_IMAGE=${BASE_IMAGE:-cmpool-test/debian:$SUITE}
PG_IMAGE=${PG_IMAGE:-cmpool-test/postgres:$PG_MAJOR}
FORCE=${FORCE:-}
# The classic builder: it needs no buildx plugin and no BuildKit image.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

present() {
	[ -z "$FORCE" ] && docker image inspect "$1" >/dev/null 2>&1
}

if present "$BASE_IMAGE"; then
	echo "build.sh: $BASE_IMAGE is present"
else
	if ! command -v debootstrap >/dev/null 2>&1; then
		echo "build.sh: installing debootstrap"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	fi
	root=$(mktemp -d /tmp/cmpool-rootfs.XXXXXX)
	trap 'rm -rf "$root"' EXIT INT TERM
	echo "build.sh: debootstrap $SUITE from $DEBIAN_MIRROR"
	debootstrap --variant=minbase "$SUITE" "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 || {
		tail -20 "$root.log"
		rm -f "$root.log"
		exit 1
	}
	rm -f "$root.log"
	# What a container does not need: downloaded packages and the package lists.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
	tar -C "$root" -c . | docker import \
		--change 'ENV LANG=C.UTF-8' \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' \
		- "$BASE_IMAGE" >/dev/null
	rm -rf "$root"
	trap - EXIT INT TERM
	echo "build.sh: built $BASE_IMAGE"
fi

if present "$PG_IMAGE"; then
	echo "build.sh: $PG_IMAGE is present"
else
	# The build reaches the Debian mirror through the host's network: no bridge or NAT needed.
	docker build -q --network=host --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PG_MAJOR="$PG_MAJOR" \
		-t "$PG_IMAGE" . >/dev/null
	echo "build.sh: built $PG_IMAGE"
fi
