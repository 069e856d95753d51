package integration_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// Regression tests for incompatibilities found by running drivers' own test suites
// through cmpool (see docs/compatibility.md).

// TestUnnamedStatementSurvivesParameterSync: a client prepares the unnamed statement in
// one transaction and binds it in the next. In between, the server was lent to a client
// with other session parameters, so the first client's parameters are applied again
// with a simple query, which destroys the server's unnamed statement. cmpool must
// prepare it again before the Bind, instead of letting the server answer 26000.
func TestUnnamedStatementSurvivesParameterSync(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 30*time.Second)

	a, err := pgconn.Connect(ctx, p.URL("", "")+"&application_name=client_a")
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(ctx) })
	b, err := pgconn.Connect(ctx, p.URL("", "")+"&application_name=client_b")
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close(ctx) })

	_, err = b.Prepare(ctx, "b_stmt", "select $1::int", nil)
	require.NoError(t, err)
	for i := range 3 {
		_, err = a.Prepare(ctx, "", "select $1::int * 2, current_setting('application_name')", nil)
		require.NoError(t, err)
		// b uses the only server with a named statement: the server is now configured
		// for b, and its unnamed statement is still a's.
		require.NoError(t, b.ExecPrepared(ctx, "b_stmt", [][]byte{[]byte("1")}, nil, nil).Read().Err)

		res := a.ExecPrepared(ctx, "", [][]byte{[]byte("21")}, nil, nil).Read()
		require.NoError(t, res.Err, "round %d", i)
		require.Len(t, res.Rows, 1)
		require.Equal(t, "42", string(res.Rows[0][0]))
		require.Equal(t, "client_a", string(res.Rows[0][1]))
	}
}
