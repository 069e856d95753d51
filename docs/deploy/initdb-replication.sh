#!/bin/bash
# Runs once when the primary's data directory is created (docker-entrypoint-initdb.d):
# a replication user for the replica's pg_basebackup and streaming.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
