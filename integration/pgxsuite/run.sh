#!/usr/bin/env bash
# Runs pgx's own test suite (packages pgconn and pgx) through cmpool, in session mode and in
# transaction mode, against a throwaway PostgreSQL started by the integration harness.
# The results are recorded in docs/compatibility.md. Arguments go to the program, e.g.:
#   integration/pgxsuite/run.sh -modes transaction -run 'TestConnCopyFrom'
#   integration/pgxsuite/run.sh -replicas 1        # with routing to a streaming replica
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go run ./integration/pgxsuite "$@"
