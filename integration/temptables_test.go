package integration_test

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestTempTableRefused: outside session mode a temporary table would vanish when cmpool
// resets the server after the transaction, and a later DROP TABLE t would drop the
// permanent table t. So creating one is refused with 0A000 before anything reaches the
// server, in the simple and the extended protocol, unless it is created ON COMMIT DROP.
// That is with pin_session_state = false; with pinning (the default) the client keeps its
// server instead (pin_test.go).
func TestTempTableRefused(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, PinSessionStateOff: true})
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "drop table if exists tt_perm; create table tt_perm(x int); insert into tt_perm values (1), (2), (3)")
	require.NoError(t, err)
	permanentRows := func() int {
		t.Helper()
		var n int
		require.NoError(t, admin.QueryRow(ctx, "select count(*) from tt_perm").Scan(&n), "the permanent table must survive")
		return n
	}
	// tempCount counts temporary relations named name on any server.
	tempCount := func(name string) int {
		t.Helper()
		var n int
		require.NoError(t, admin.QueryRow(ctx, "select count(*) from pg_class where relname = $1 and relpersistence = 't'", name).Scan(&n))
		return n
	}
	requireRefused := func(t *testing.T, err error) {
		t.Helper()
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "want an error, got %v", err)
		require.Equal(t, "0A000", pe.Code, "got %v", err)
		require.Contains(t, pe.Message, "transaction pooling mode")
		require.Contains(t, pe.Hint, "ON COMMIT DROP")
		require.Contains(t, pe.Hint, "pool_mode = session")
	}

	a, warnings := connectNotices(t, p.URL("", ""))
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)

	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			run := func(sql string) error { return execVia(ctx, a, proto.extended, sql) }
			for _, q := range []string{
				"create temp table tt_perm(x int)",
				"CREATE TEMPORARY TABLE tt_perm(x int) ON COMMIT PRESERVE ROWS",
				"create temp table tt_perm as select 1 as x",
				"select 1 as x into temp tt_perm",
				"create table pg_temp.tt_perm(x int)",
				"create temp view tt_perm_v as select 1",
				"create temp sequence tt_perm_s",
				"select 1; create temp table tt_perm(x int)",
			} {
				requireRefused(t, run(q))
			}
			require.Zero(t, tempCount("tt_perm"), "nothing may reach the server")
			require.Zero(t, tempCount("tt_perm_v")+tempCount("tt_perm_s"))

			// In a transaction block: refused, the transaction goes on (simple protocol, as
			// for cmpool's other refusals) or is aborted (extended protocol: the error comes
			// from the server's place in the batch); either way it ends cleanly.
			require.NoError(t, run("begin"))
			require.NoError(t, run("select 1"))
			requireRefused(t, run("create temp table tt_perm(x int)"))
			require.NoError(t, run("rollback"))

			// ON COMMIT DROP cannot outlive the transaction: it works, and shadows the
			// permanent table until the commit.
			require.NoError(t, run("begin"))
			require.NoError(t, run("create temp table tt_perm(x int) on commit drop"))
			require.NoError(t, run("insert into tt_perm values (10)"))
			var n int
			require.NoError(t, a.QueryRow(ctx, "select count(*) from tt_perm").Scan(&n))
			require.Equal(t, 1, n, "the temporary table shadows the permanent one")
			require.NoError(t, run("commit"))
			require.Equal(t, 3, permanentRows())
			require.Zero(t, tempCount("tt_perm"))
			require.Empty(t, warnings())

			// The other client, on the same server, was never affected.
			require.NoError(t, b.QueryRow(ctx, "select count(*) from tt_perm").Scan(&n))
			require.Equal(t, 3, n)
		})
	}

	t.Run("named statement", func(t *testing.T) {
		// pgx prepares a named statement with Parse, Describe, Sync.
		_, err := a.PgConn().Prepare(ctx, "tt_stmt", "create temp table tt_perm(x int)", nil)
		requireRefused(t, err)
		// Parse and Sync alone are answered without a server.
		fe := a.PgConn().Frontend()
		fe.Send(&pgproto3.Parse{Name: "tt_stmt2", Query: "create temp table tt_perm(x int)"})
		fe.Send(&pgproto3.Sync{})
		require.NoError(t, fe.Flush())
		var got []string
		for {
			msg, err := fe.Receive()
			require.NoError(t, err)
			switch m := msg.(type) {
			case *pgproto3.ErrorResponse:
				got = append(got, m.Code)
			case *pgproto3.ReadyForQuery:
				got = append(got, "Z"+string(m.TxStatus))
			default:
				got = append(got, fmt.Sprintf("%T", msg))
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		require.Equal(t, []string{"0A000", "ZI"}, got)
		require.Zero(t, tempCount("tt_perm"))
		var n int
		require.NoError(t, a.QueryRow(ctx, "select count(*) from tt_perm").Scan(&n))
		require.Equal(t, 3, n)
	})

	t.Run("psql", func(t *testing.T) {
		// A script that stops at the first error never reaches its DROP TABLE.
		out, err := exec.CommandContext(ctx, psqlPath(t), p.URL("", ""), "-X", "-At", "-v", "ON_ERROR_STOP=1",
			"-c", "create temp table tt_perm(x int)",
			"-c", "insert into tt_perm values (42)",
			"-c", "drop table tt_perm").CombinedOutput()
		require.Error(t, err, "psql must stop at the refused CREATE: %s", out)
		require.Contains(t, string(out), "cannot create temporary table tt_perm in transaction pooling mode")
		require.Equal(t, 3, permanentRows())
	})
	assertNoDirtyServers(t, c)
}

// TestTempTableSafetyNet creates a temporary table where the grammar cannot see it, in a
// DO block: the server is checked when released, and reset before another client gets it
// (pin_session_state = false; with pinning the client is pinned instead, pin_test.go).
func TestTempTableSafetyNet(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, PinSessionStateOff: true})
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := a.Exec(ctx, "do $$ begin create temp table tt_do(x int); insert into tt_do values (7); end $$")
	require.NoError(t, err)
	var visible bool
	require.NoError(t, b.QueryRow(ctx, "select to_regclass('pg_temp.tt_do') is not null").Scan(&visible))
	require.False(t, visible, "another client must never see a temporary table of the server")
	var n int
	require.NoError(t, admin.QueryRow(ctx, "select count(*) from pg_class where relname = 'tt_do' and relpersistence = 't'").Scan(&n))
	require.Zero(t, n)

	// A function whose call does not say "temp" creates one: the server is checked too.
	_, err = admin.Exec(ctx, `create or replace function tt_make() returns int language plpgsql as $$
		begin create temporary table tt_fn(x int); insert into tt_fn values (8); return 1; end $$`)
	require.NoError(t, err)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		a := connect(t, p.URL("", ""), mode)
		require.NoError(t, a.QueryRow(ctx, "select tt_make()").Scan(&n))
		require.NoError(t, b.QueryRow(ctx, "select to_regclass('pg_temp.tt_fn') is not null").Scan(&visible))
		require.False(t, visible, "another client must never see a temporary table a function created (%v)", mode)
	}
}

// TestTempTableSessionMode: in session mode a temporary table lives as long as the client,
// as on a direct connection, and DROP TABLE drops it, not the permanent table.
func TestTempTableSessionMode(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, PoolMode: pool.ModeSession})
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "drop table if exists tt_sess; create table tt_sess(x int); insert into tt_sess values (1), (2)")
	require.NoError(t, err)
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
			run := func(sql string) error { return execVia(ctx, a, proto.extended, sql) }
			require.NoError(t, run("create temp table tt_sess(x int)"))
			require.NoError(t, run("insert into tt_sess values (9)"))
			var n int
			require.NoError(t, a.QueryRow(ctx, "select count(*) from tt_sess").Scan(&n))
			require.Equal(t, 1, n)
			require.NoError(t, run("drop table tt_sess"))
			require.NoError(t, a.QueryRow(ctx, "select count(*) from tt_sess").Scan(&n))
			require.Equal(t, 2, n, "DROP TABLE dropped the temporary table")
			require.NoError(t, a.Close(ctx))
		})
	}
}
