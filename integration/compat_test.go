package integration_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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

// TestPrepareAfterDDLSeesNewSchema: a statement prepared after DDL is analysed against the
// new schema, although a statement with the same text was prepared (and shared) before
// it. pgx relies on this to recover from a cached statement that no longer fits: it
// drops it and prepares the text again (pgx's TestStmtCacheInvalidationExec).
func TestPrepareAfterDDLSeesNewSchema(t *testing.T) {
	for _, mode := range []pool.Mode{pool.ModeSession, pool.ModeTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			c, p := proxy(t, pool.Config{PoolMode: mode, DefaultPoolSize: 2})
			ctx := ctxT(t, 30*time.Second)
			table := "ddl_prep_" + string(mode)
			_, err := direct(t, c).Exec(ctx, fmt.Sprintf("drop table if exists %[1]s; create table %[1]s(f1 int, f2 int)", table))
			require.NoError(t, err)
			insert := fmt.Sprintf("insert into %s (f1, f2) values ($1, $2)", table)

			a, err := pgconn.Connect(ctx, p.URL("", ""))
			require.NoError(t, err)
			t.Cleanup(func() { _ = a.Close(ctx) })
			sd, err := a.Prepare(ctx, "before", insert, nil)
			require.NoError(t, err)
			require.Equal(t, []uint32{pgtype.Int4OID, pgtype.Int4OID}, sd.ParamOIDs)

			require.NoError(t, a.Exec(ctx, fmt.Sprintf("alter table %s alter column f1 type boolean using f1::boolean", table)).Close())

			sd, err = a.Prepare(ctx, "after", insert, nil)
			require.NoError(t, err)
			require.Equal(t, []uint32{pgtype.BoolOID, pgtype.Int4OID}, sd.ParamOIDs, "prepared after the ALTER")
			res := a.ExecPrepared(ctx, "after", [][]byte{[]byte("true"), []byte("2")}, nil, nil).Read()
			require.NoError(t, res.Err)

			// Another client preparing the text now gets the new analysis too.
			b, err := pgconn.Connect(ctx, p.URL("", ""))
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close(ctx) })
			sd, err = b.Prepare(ctx, "s", insert, nil)
			require.NoError(t, err)
			require.Equal(t, []uint32{pgtype.BoolOID, pgtype.Int4OID}, sd.ParamOIDs, "prepared by another client after the ALTER")
		})
	}
}

// TestPrepareAloneIsNotAWrite: preparing a writing statement (Parse, Describe, Sync, as
// pgx's statement cache and JDBC do before the first execution) runs nothing, so it must
// not count as a write for read-your-writes: the client's reads would otherwise wait for
// the replicas to replay a position it never wrote, or go to the primary.
func TestPrepareAloneIsNotAWrite(t *testing.T) {
	c, p := routedProxy(t, pool.Config{})
	ctx := ctxT(t, 30*time.Second)
	_, err := direct(t, c).Exec(ctx, "drop table if exists prep_no_write; create table prep_no_write(id int)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	conn, err := pgconn.Connect(ctx, p.URL("", ""))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	lastWrite := func() string {
		res, err := conn.Exec(ctx, "show cmpool.last_write_lsn").ReadAll()
		require.NoError(t, err)
		return string(res[0].Rows[0][0])
	}
	before := lastWrite()

	for _, name := range []string{"named_insert", ""} {
		sd, err := conn.Prepare(ctx, name, "insert into prep_no_write values ($1)", nil)
		require.NoError(t, err)
		require.Len(t, sd.ParamOIDs, 1)
		require.Equal(t, before, lastWrite(), "after preparing %q", name)
	}

	res := conn.ExecPrepared(ctx, "named_insert", [][]byte{[]byte("1")}, nil, nil).Read()
	require.NoError(t, res.Err)
	require.NotEqual(t, before, lastWrite(), "after executing the insert")
}
