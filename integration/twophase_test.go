package integration_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// execVia runs sql on conn through the simple protocol, or through the extended protocol
// (Parse, Bind, Execute, Sync) when extended is set.
func execVia(ctx context.Context, conn *pgx.Conn, extended bool, sql string) error {
	if extended {
		return conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
	}
	_, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	return err
}

// connectNotices connects to url (simple protocol by default) and returns a function that
// takes the notices of severity WARNING or ERROR the connection got so far.
func connectNotices(t *testing.T, url string) (*pgx.Conn, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if n.Severity == "WARNING" || n.Severity == "ERROR" {
			mu.Lock()
			got = append(got, n.Severity+": "+n.Message)
			mu.Unlock()
		}
	}
	conn, err := pgx.ConnectConfig(ctxT(t, 30*time.Second), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
}

// protocols names the two ways execVia sends a statement.
var protocols = []struct {
	name     string
	extended bool
}{{"simple", false}, {"extended", true}}

// TestPrepareTransactionDisabled sends PREPARE TRANSACTION to a server with
// max_prepared_transactions = 0: it is two-phase commit, not SQL-level PREPARE, so the
// client gets the server's own error (55000), in every pooling mode and protocol.
func TestPrepareTransactionDisabled(t *testing.T) {
	for _, mode := range []pool.Mode{pool.ModeTransaction, pool.ModeSession} {
		for _, proto := range protocols {
			t.Run(string(mode)+"/"+proto.name, func(t *testing.T) {
				_, p := proxy(t, pool.Config{DefaultPoolSize: 1, PoolMode: mode})
				ctx := ctxT(t, 30*time.Second)
				conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
				run := func(sql string) error { return execVia(ctx, conn, proto.extended, sql) }
				require.NoError(t, run("begin"))
				require.NoError(t, run("select 1"))
				err := run("PREPARE TRANSACTION 'cmpool_2pc_off'")
				require.Equal(t, "55000", pgCode(err), "want the server's error, got %v", err)
				require.Contains(t, err.Error(), "prepared transactions are disabled")
				require.NoError(t, run("rollback"))
				var n int
				require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&n))
			})
		}
	}
}

// TestPrepareTransaction runs two-phase commit through cmpool on a server that allows it:
// one client prepares a transaction, another commits or rolls it back.
func TestPrepareTransaction(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Settings: map[string]string{"max_prepared_transactions": "4"}})
	ctx := ctxT(t, 60*time.Second)
	admin := connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := admin.Exec(ctx, "create table twophase_t(id int primary key, v text)")
	require.NoError(t, err)
	count := func(id int) int {
		t.Helper()
		var n int
		require.NoError(t, admin.QueryRow(ctx, "select count(*) from twophase_t where id = $1", id).Scan(&n))
		return n
	}

	id := 0
	for _, mode := range []pool.Mode{pool.ModeTransaction, pool.ModeSession} {
		for _, proto := range protocols {
			t.Run(string(mode)+"/"+proto.name, func(t *testing.T) {
				p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 2, PoolMode: mode})
				a, warnings := connectNotices(t, p.URL("", ""))
				b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
				gid := map[string]string{}
				ids := map[string]int{}
				for _, end := range []string{"commit", "rollback"} {
					id++
					ids[end] = id
					gid[end] = "cmpool_2pc_" + end + "_" + string(mode) + "_" + proto.name
					require.NoError(t, execVia(ctx, a, proto.extended, "begin"))
					_, err := a.Exec(ctx, "insert into twophase_t values ($1, 'x')", id)
					require.NoError(t, err)
					require.NoError(t, execVia(ctx, a, proto.extended, "PREPARE TRANSACTION '"+gid[end]+"'"),
						"PREPARE TRANSACTION must reach the server")
					require.Zero(t, count(id), "a prepared transaction is not committed yet")
					require.Empty(t, warnings(), "PREPARE TRANSACTION uses nothing that outlives the transaction")
					var n int
					require.NoError(t, a.QueryRow(ctx, "select 1").Scan(&n), "the session is usable after PREPARE TRANSACTION")
				}
				require.NoError(t, execVia(ctx, b, proto.extended, "COMMIT PREPARED '"+gid["commit"]+"'"))
				require.NoError(t, execVia(ctx, b, proto.extended, "ROLLBACK PREPARED '"+gid["rollback"]+"'"))
				require.Equal(t, 1, count(ids["commit"]))
				require.Zero(t, count(ids["rollback"]))
				var n int
				require.NoError(t, admin.QueryRow(ctx, "select count(*) from pg_prepared_xacts").Scan(&n))
				require.Zero(t, n)
			})
		}
	}
}
