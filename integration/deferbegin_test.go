package integration_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// A plain BEGIN holds no server until the transaction's first statement: with one server
// connection, another client runs a whole transaction meanwhile. The BEGIN still opens a
// real transaction around the statements that follow.
func TestDeferredBeginHoldsNoServer(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: 5 * time.Second})
	ctx := ctxT(t, 30*time.Second)
	const db = "deferbegin"
	freshDatabase(t, direct(t, c), db)
	admin := connect(t, c.Primary.URL(db, ""), pgx.QueryExecModeSimpleProtocol)
	_, err := admin.Exec(ctx, "create table d(id int)")
	require.NoError(t, err)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			a := connect(t, p.URL(db, ""), mode)
			b := connect(t, p.URL(db, ""), mode)
			_, err := a.Exec(ctx, "BEGIN")
			require.NoError(t, err)
			require.Equal(t, byte('T'), a.PgConn().TxStatus(), "the client is in a transaction")

			// b gets the only server at once, twice over.
			bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			var n int
			require.NoError(t, b.QueryRow(bctx, "select count(*) from d").Scan(&n))
			_, err = b.Exec(bctx, "begin; insert into d values (0); commit")
			require.NoError(t, err)

			// a's statements run in one transaction: the same transaction timestamp, and
			// its rows vanish on rollback.
			var t1, t2 time.Time
			require.NoError(t, a.QueryRow(ctx, "select now()").Scan(&t1))
			_, err = a.Exec(ctx, "insert into d values (1)")
			require.NoError(t, err)
			time.Sleep(20 * time.Millisecond)
			require.NoError(t, a.QueryRow(ctx, "select now()").Scan(&t2))
			require.Equal(t, t1, t2, "now() is the transaction's start: one transaction")
			_, err = a.Exec(ctx, "ROLLBACK")
			require.NoError(t, err)
			require.Equal(t, byte('I'), a.PgConn().TxStatus())
			var ones int
			require.NoError(t, admin.QueryRow(ctx, "select count(*) from d where id = 1").Scan(&ones))
			require.Zero(t, ones, "the rolled back insert is gone")

			// And committed work stays.
			_, err = a.Exec(ctx, "begin transaction")
			require.NoError(t, err)
			_, err = a.Exec(ctx, "insert into d values (2)")
			require.NoError(t, err)
			_, err = a.Exec(ctx, "commit")
			require.NoError(t, err)
			var twos int
			require.NoError(t, admin.QueryRow(ctx, "select count(*) from d where id = 2").Scan(&twos))
			require.Positive(t, twos)
			_, err = admin.Exec(ctx, "delete from d")
			require.NoError(t, err)
		})
	}
	assertNoDirtyServers(t, c)
}

// The cases around a deferred BEGIN: BEGIN twice, BEGIN then COMMIT, BEGIN then an error,
// BEGIN then a Sync alone, and idle_transaction_timeout with no server held.
func TestDeferredBeginEdges(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)

	// A second BEGIN reaches the server, which warns, as it would without cmpool.
	var notices []string
	cfg, err := pgconn.ParseConfig(p.URL("", ""))
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Code) }
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close(context.Background()) })
	_, err = pc.Exec(ctx, "BEGIN").ReadAll()
	require.NoError(t, err)
	_, err = pc.Exec(ctx, "BEGIN").ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"25001"}, notices, "there is already a transaction in progress")
	_, err = pc.Exec(ctx, "COMMIT").ReadAll()
	require.NoError(t, err)
	require.Equal(t, byte('I'), pc.TxStatus())

	// BEGIN then COMMIT at once.
	_, err = conn.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "commit")
	require.NoError(t, err)
	require.Equal(t, byte('I'), conn.PgConn().TxStatus())

	// An error in the first statement aborts the transaction as usual.
	_, err = conn.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "select 1/0")
	require.Equal(t, "22012", pgCode(err))
	require.Equal(t, byte('E'), conn.PgConn().TxStatus())
	_, err = conn.Exec(ctx, "select 1")
	require.Equal(t, "25P02", pgCode(err))
	_, err = conn.Exec(ctx, "rollback")
	require.NoError(t, err)

	// A Sync alone after BEGIN reports the transaction.
	_, err = pc.Exec(ctx, "BEGIN").ReadAll()
	require.NoError(t, err)
	require.NoError(t, pc.SyncConn(ctx))
	require.Equal(t, byte('T'), pc.TxStatus())
	_, err = pc.Exec(ctx, "ROLLBACK").ReadAll()
	require.NoError(t, err)

	// idle_transaction_timeout holds for a client whose BEGIN is deferred.
	pt := integration.StartProxy(t, c, pool.Config{IdleTransactionTimeout: 300 * time.Millisecond})
	idle := connect(t, pt.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err = idle.Exec(ctx, "begin")
	require.NoError(t, err)
	time.Sleep(700 * time.Millisecond)
	_, err = idle.Exec(ctx, "select 1")
	require.Error(t, err)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		require.Equal(t, "25P03", pgErr.Code)
	}
	assertNoDirtyServers(t, c)
}

// psql sends BEGIN alone in a script; the transaction works through cmpool.
func TestDeferredBeginPsql(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		psql = "/usr/lib/postgresql/15/bin/psql"
	}
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	out, err := exec.CommandContext(ctxT(t, 30*time.Second), psql, p.URL("", ""), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c",
		"BEGIN", "-c", "create temp table x(i int) on commit drop", "-c", "insert into x values (41), (1)",
		"-c", "select sum(i) from x", "-c", "COMMIT").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, strings.Fields(string(out)), "42")
}
