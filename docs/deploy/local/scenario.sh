#!/bin/bash
# Brings up docs/deploy/docker-compose.yml (primary, streaming replica, three peered cmpool
# behind HAProxy, Prometheus) and runs, under a pgbench load through the balancer:
#
#   1. a rolling restart of each cmpool instance: no transaction may fail;
#   2. a replica kill: reads go on;
#   3. a primary kill and the replica's promotion: writes resume;
#   4. Prometheus scrapes all three instances.
#
# It prints one line per step with pgbench's counts, and exits non-zero when a step fails.
# The stack is removed at the end. All traffic stays on 127.0.0.1 and the stack's own network.
#
#   docs/deploy/local/scenario.sh     # with the images of local/build.sh (see .ci/run)
#
# Settings (environment): POSTGRES_IMAGE, HAPROXY_IMAGE, PROMETHEUS_IMAGE, CMPOOL_IMAGE (as
# in docker-compose.yml), PGBENCH (pgbench), COMPOSE (docker-compose, or "docker compose").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
file="$here/../docker-compose.yml"
project=cmpoolscenario
if [ -z "${COMPOSE:-}" ]; then
	if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
PGBENCH=${PGBENCH:-$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)}
export PGHOST=127.0.0.1 PGPORT=6432 PGUSER=app PGPASSWORD=app PGDATABASE=app PGSSLMODE=disable
compose() { $COMPOSE -p "$project" -f "$file" "$@"; }
failures=0

cleanup() {
	compose down -v --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

echo "scenario: up"
compose up -d --no-build >/dev/null 2>&1 || { compose logs --tail 30; exit 1; }
for _ in $(seq 1 120); do
	psql -Atqc "select 1" >/dev/null 2>&1 && break
	sleep 1
done
psql -Atqc "select 1" >/dev/null || { compose logs --tail 30; exit 1; }

# pgbench with a new connection per transaction (-C), so that a client does not stay on an
# instance that restarts; prints "processed failed exit".
bench() {
	local out rc=0
	out=$("$PGBENCH" -n -C "$@" 2>&1) || rc=$?
	local processed failed
	processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
	aborted=$(grep -c "aborted\|error" <<<"$out" || true)
	echo "${processed:-0} ${failed:-0} $rc $aborted"
	if [ "$rc" -ne 0 ] && [ -n "${VERBOSE:-}" ]; then grep -m5 "aborted\|error" <<<"$out" >&2 || true; fi
}
report() { # name want-ok processed failed rc aborted
	local name=$1 ok=$2
	shift 2
	echo "scenario: $name: $1 transactions, $2 failed, pgbench exit $3, $4 error lines: $ok"
	[ "$ok" = ok ] || failures=$((failures + 1))
}

"$PGBENCH" -i -s 1 -I dtgp >/dev/null 2>&1

# 1. Rolling restart: each instance drains on SIGTERM and comes back; HAProxy sends new
#    connections to the others meanwhile.
tmp=$(mktemp)
( bench -c 4 -j 2 -T 60 >"$tmp" ) &
load=$!
sleep 5
for s in cmpool1 cmpool2 cmpool3; do
	compose restart -t 40 "$s" >/dev/null 2>&1
	sleep 8 # HAProxy checks /readyz every 2s and takes an instance back after one success
done
wait $load
read -r processed failed rc aborted <"$tmp"
ok=ok; [ "$rc" = 0 ] && [ "$failed" = 0 ] && [ "$processed" -gt 0 ] || ok=FAILED
report "rolling restart of cmpool1..3 under load" "$ok" "$processed" "$failed" "$rc" "$aborted"

# 2. Replica kill: reads (pgbench -S) go on, on the primary.
compose kill replica >/dev/null 2>&1
read -r processed failed rc aborted < <(bench -S -c 4 -j 2 -T 15)
ok=ok; [ "$processed" -gt 0 ] || ok=FAILED
report "replica killed, reads" "$ok" "$processed" "$failed" "$rc" "$aborted"
compose start replica >/dev/null 2>&1
for _ in $(seq 1 60); do
	compose exec -T replica psql -U app -d app -Atqc "select pg_is_in_recovery()" 2>/dev/null | grep -q t && break
	sleep 1
done

# 3. Primary kill, then the replica's promotion: cmpool follows it and writes resume.
tmp2=$(mktemp)
( bench -c 4 -j 2 -T 40 >"$tmp2" ) &
load=$!
sleep 5
compose kill primary >/dev/null 2>&1
sleep 1
compose exec -T replica pg_ctl promote -D /var/lib/postgresql/data >/dev/null
promoted=$SECONDS
wait $load || true
read -r processed failed rc aborted <"$tmp2"
# pgbench gives up on a client at its first error: the clients whose transactions the kill cut
# stop there. That is what their applications see too; the count is for the record.
echo "scenario: primary killed, replica promoted: load across the kill: $processed transactions, pgbench exit $rc, $aborted error lines"
# Each cmpool instance follows the promotion by itself (replica_check_interval): the first
# write acknowledged through the balancer, then 10 in a row (new connections, spread over the
# instances), then a load that must not fail.
resumed=""
streak=0
for _ in $(seq 1 240); do
	if psql -Atqc "create table if not exists scenario_writes (at timestamptz); insert into scenario_writes values (now())" >/dev/null 2>&1; then
		[ -n "$resumed" ] || resumed=$((SECONDS - promoted))
		streak=$((streak + 1))
		[ "$streak" -ge 10 ] && break
	else
		streak=0
	fi
	sleep 0.5
done
read -r after_p after_f after_rc after_a < <(bench -c 4 -j 2 -T 10)
ok=ok; [ -n "$resumed" ] && [ "$after_p" -gt 0 ] && [ "$after_rc" = 0 ] && [ "$after_f" = 0 ] || ok=FAILED
echo "scenario: first write acknowledged ${resumed:-never} s after the promotion"
report "primary killed, replica promoted: writes after" "$ok" "$after_p" "$after_f" "$after_rc" "$after_a"

# 4. Prometheus scrapes every instance (scrape_interval 15s).
up=0
for _ in $(seq 1 45); do
	up=$(curl -fsS 'http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22cmpool%22%7D%3D%3D1' 2>/dev/null |
		grep -o '"instance":"[^"]*"' | sort -u | wc -l) || up=0
	[ "$up" = 3 ] && break
	sleep 1
done
ok=ok; [ "$up" = 3 ] || ok=FAILED
echo "scenario: prometheus scrapes $up of 3 cmpool instances: $ok"
[ "$ok" = ok ] || failures=$((failures + 1))
rm -f "$tmp" "$tmp2"
[ "$failures" = 0 ]
