#!/bin/bash
# Entrypoint of the container backend's PostgreSQL image. It honours the contract of the
# official postgres image, so that the same containers run on either:
#
#   PGDATA                      the data directory (/var/lib/postgresql/data)
#   PGPORT                      the server's port (5432)
#   POSTGRES_USER               the superuser initdb creates (postgres)
#   POSTGRES_PASSWORD           its password; required unless POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_DB                 a database created after initdb ($POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD   the pg_hba.conf method for TCP connections from any address
#                               (scram-sha-256)
#   POSTGRES_INITDB_ARGS        extra initdb arguments, split on blanks
#   /docker-entrypoint-initdb.d scripts run once, in name order, after initdb on a server
#                               reachable through its Unix socket only: *.sh (executed when
#                               executable, else sourced), *.sql, *.sql.gz, *.sql.xz (psql)
#
# Started as root, it makes $PGDATA the postgres user's and runs again as that user; the
# server never runs as root. Arguments that start with "-" are the server's options; any
# other command than "postgres" is run as given.
set -Eeuo pipefail

log() { printf 'docker-entrypoint.sh: %s\n' "$*" >&2; }

if [ "${1:-}" = "" ] || [ "${1:0:1}" = "-" ]; then
	set -- postgres "$@"
fi
if [ "$1" != "postgres" ]; then
	exec "$@"
fi

if [ "$(id -u)" = "0" ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	# A volume or bind mount may come in owned by root: give what is not the server's to it.
	find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres {} +
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# psql and pg_ctl below reach the server through its Unix socket. The server's port is
# $PGPORT (5432 when unset), as in the official image.
export PGHOST=/var/run/postgresql PGPORT="${PGPORT:-5432}"

initialize() {
	local user="${POSTGRES_USER:-postgres}"
	local db="${POSTGRES_DB:-$user}"
	local method="${POSTGRES_HOST_AUTH_METHOD:-}"
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$method" != "trust" ]; then
		log "error: the database is not initialized and no superuser password is given."
		log "Set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one."
		exit 1
	fi
	method="${method:-scram-sha-256}"

	local pwfile=""
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		pwfile="$(mktemp)"
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	fi
	local -a extra=()
	if [ -n "${POSTGRES_INITDB_ARGS:-}" ]; then
		read -r -a extra <<<"$POSTGRES_INITDB_ARGS"
	fi
	initdb -D "$PGDATA" --username="$user" ${pwfile:+--pwfile="$pwfile"} "${extra[@]}"
	[ -z "$pwfile" ] || rm -f "$pwfile"

	# Every address, with the chosen method; Unix-socket logins stay as initdb made them.
	printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# A server for the init scripts that no TCP client can reach yet.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
	local -a psql=(psql -X -q -v ON_ERROR_STOP=1 --username "$user" --no-password)
	if [ "$db" != "postgres" ]; then
		"${psql[@]}" --dbname postgres -v db="$db" <<<'CREATE DATABASE :"db";'
	fi
	export POSTGRES_USER="$user" POSTGRES_DB="$db"
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				log "running $f"
				"$f"
			else
				log "sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql) log "running $f"; "${psql[@]}" --dbname "$db" -f "$f" ;;
		*.sql.gz) log "running $f"; gzip -dc "$f" | "${psql[@]}" --dbname "$db" ;;
		*.sql.xz) log "running $f"; xz -dc "$f" | "${psql[@]}" --dbname "$db" ;;
		*) log "ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	log "initialization done; starting the server"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	initialize
fi
exec "$@"
