package backend_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/backend"
)

func TestWithParams(t *testing.T) {
	t.Parallel()
	params := backend.TLSParams("verify-full", "/ca dir/ca.pem", "", "")
	require.Equal(t, [][2]string{{"sslmode", "verify-full"}, {"sslrootcert", "/ca dir/ca.pem"}}, params)
	for _, tc := range []struct{ name, in, want string }{
		{"url, setting overrides", "postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=%2Fca+dir%2Fca.pem"},
		{"key=value", "host=h user=u", `host=h user=u sslmode='verify-full' sslrootcert='/ca dir/ca.pem'`},
		{"empty stays empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := backend.WithParams(tc.in, params)
			require.Equal(t, tc.want, got)
			if got != "" {
				_, err := pgconn.ParseConfig(got)
				require.ErrorContains(t, err, "ca.pem", "pgconn reads the settings (and fails to open the file)")
			}
		})
	}
	require.Equal(t, `host=h sslkey='a\'b\\c'`, backend.WithParams("host=h", [][2]string{{"sslkey", `a'b\c`}}))
	require.Equal(t, "host=h", backend.WithParams("host=h", nil))
}
