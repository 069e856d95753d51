package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKnownLimitation(t *testing.T) {
	const exists = `pgbench: error: ERROR:  prepared statement "P_0" already exists`
	for _, tc := range []struct {
		name                              string
		target, workload, version, output string
		want                              bool
	}{
		{"pgbouncer 1.18 prepared", targetPgbouncer, "select-prepared", "PgBouncer 1.18.0", exists, true},
		{"pgbouncer 1.21 supports it", targetPgbouncer, "select-prepared", "PgBouncer 1.21.0", exists, false},
		{"cmpool is never excused", targetCmpool, "select-prepared", "PgBouncer 1.18.0", exists, false},
		{"other error", targetPgbouncer, "select-prepared", "PgBouncer 1.18.0", "server closed the connection", false},
		{"other workload", targetPgbouncer, "select", "PgBouncer 1.18.0", exists, false},
		{"unknown version", targetPgbouncer, "select-prepared", "unknown", exists, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := knownLimitation(tc.target, tc.workload, tc.version, tc.output)
			require.Equal(t, tc.want, got != "", got)
		})
	}
}
