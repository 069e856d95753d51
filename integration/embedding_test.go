package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// TestAuthenticatorHook: an embedding program looks users up itself. Its secrets are
// checked with SCRAM (the default once a lookup is configured); an unknown user fails
// like a wrong password, and a failing lookup with 08006.
func TestAuthenticatorHook(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 30*time.Second)
	var lookups atomic.Int64
	p := integration.StartProxy(t, c, pool.Config{
		Authenticator: pool.AuthenticatorFunc(func(_ context.Context, user string) (string, bool, error) {
			lookups.Add(1)
			switch user {
			case "postgres":
				return "from-the-vault", true, nil
			case "broken":
				return "", false, errors.New("vault unreachable")
			}
			return "", false, nil
		}),
	})
	url := func(user, pw string) string {
		return fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable", user, pw, p.Addr)
	}
	conn := connect(t, url("postgres", "from-the-vault"), pgx.QueryExecModeExec)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))

	for _, tc := range []struct{ user, pw, code string }{
		{"postgres", "wrong", "28P01"},
		{"nobody", "x", "28P01"},
		{"broken", "x", "08006"},
	} {
		_, err := pgx.Connect(ctx, url(tc.user, tc.pw))
		require.Equal(t, tc.code, pgCode(err), "%s: %v", tc.user, err)
	}
	require.GreaterOrEqual(t, lookups.Load(), int64(4))
}
