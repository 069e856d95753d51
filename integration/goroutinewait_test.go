package integration_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// Waiting for a server as a goroutine (waitServer, pool/acquire.go): without event loops, a
// session that finds no idle server waits in the pool's Acquire. These tests drive every
// way such a wait ends, with the two-clients-one-server rules, as eventloop_claim_test.go
// does for the waits on the loops.

// waitingClients waits until the console shows n clients waiting for a server.
func waitingClients(t *testing.T, console *pgx.Conn, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, r := range consoleRows(t, console, "SHOW POOLS") {
			if r["database"] == "postgres" && r["cl_waiting"] == strconv.Itoa(n) {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "%d clients waiting", n)
}

// TestGoroutineWaitEnds: pool size 1, no loops. A holds the server in a transaction
// after SET and SET LOCAL. B's wait ends by query_wait_timeout (57014), twice; K's by
// KILL_CLIENT (57P01), at once. Neither is lent the server, and once A commits, B gets it
// without any of A's session, and A keeps its own.
func TestGoroutineWaitEnds(t *testing.T) {
	_, p := adminProxy(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: 700 * time.Millisecond})
	ctx := ctxT(t, time.Minute)
	a := connect(t, p.URL("", "")+"&application_name=client_a", pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", "")+"&application_name=wait_b", pgx.QueryExecModeCacheStatement)
	k := connect(t, p.URL("", "")+"&application_name=wait_k", pgx.QueryExecModeSimpleProtocol)
	console := adminConn(t, p, "pgbouncer", "postgres")

	_, err := a.Exec(ctx, "set statement_timeout = '4321s'")
	require.NoError(t, err)
	tx, err := a.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "set local work_mem = '7777kB'")
	require.NoError(t, err)

	for range 2 { // the second wait makes a new waiter: the first was closed
		start := time.Now()
		_, err = b.Exec(ctx, "select 1")
		require.Equal(t, "57014", pgCode(err), "got %v", err)
		require.Contains(t, err.Error(), "query_wait_timeout")
		require.Less(t, time.Since(start), 5*time.Second)
	}

	done := asyncExec(ctx, k, "select 2")
	waitingClients(t, console, 1)
	_, err = console.Exec(ctx, "KILL_CLIENT "+clientID(t, console, "wait_k"))
	require.NoError(t, err)
	select {
	case err := <-done:
		require.Equal(t, "57P01", pgCode(err), "got %v", err)
	case <-time.After(500 * time.Millisecond):
		t.Fatal("KILL_CLIENT did not end the wait before query_wait_timeout")
	}

	// B waits again, and is handed the server when A commits.
	got := sessionSettings(ctx, b)
	waitingClients(t, console, 1)
	require.NoError(t, tx.Commit(ctx))
	s := <-got
	require.NoError(t, s.err)
	require.Equal(t, "wait_b", s.app)
	require.NotEqual(t, "4321s", s.timeout, "B sees A's statement_timeout")
	require.NotEqual(t, "7777kB", s.workMem, "B sees A's SET LOCAL")
	var timeout string
	require.NoError(t, a.QueryRow(ctx, "select current_setting('statement_timeout')").Scan(&timeout))
	require.Equal(t, "4321s", timeout, "A keeps its session")

	require.Eventually(t, func() bool {
		for _, r := range consoleRows(t, console, "SHOW POOLS") {
			if r["database"] == "postgres" && (r["sv_active"] != "0" || r["cl_waiting"] != "0" || r["sv_idle"] != "1") {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "the one server is idle, and nobody waits")
}

// seenSettings is what a client saw of its session: application_name, statement_timeout
// and work_mem.
type seenSettings struct {
	app, timeout, workMem string
	err                   error
}

// sessionSettings asks conn for its session's settings, in a goroutine: for a client that
// waits for the server another client changed its session on.
func sessionSettings(ctx context.Context, conn *pgx.Conn) <-chan seenSettings {
	got := make(chan seenSettings, 1)
	go func() {
		var s seenSettings
		s.err = conn.QueryRow(ctx, "select current_setting('application_name'), current_setting('statement_timeout'), current_setting('work_mem')").
			Scan(&s.app, &s.timeout, &s.workMem)
		got <- s
	}()
	return got
}

// waitMark is called before B's request for a server that A holds; it returns a function
// that returns once B waits. The tests below run on goroutines and on the event loops
// (eventloop_claim_test.go), each marking the wait its own way.
type waitMark func(t *testing.T, p *integration.Proxy) (waiting func())

// consoleWaiting is the waitMark of goroutines: the console shows one client waiting.
func consoleWaiting(t *testing.T, p *integration.Proxy) func() {
	console := adminConn(t, p, "pgbouncer", "postgres")
	return func() { waitingClients(t, console, 1) }
}

// serverClosedWhileWaiting: pool size 1 (cfg), the server A holds dies while B waits for
// it. It is closed, not given back: B must get a new connection, long before
// query_wait_timeout.
func serverClosedWhileWaiting(t *testing.T, cfg pool.Config, mark waitMark) {
	c, p := adminProxy(t, cfg)
	ctx := ctxT(t, time.Minute)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	tx, err := a.Begin(ctx)
	require.NoError(t, err)
	var pid int
	require.NoError(t, tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))

	waiting := mark(t, p)
	got := make(chan error, 1)
	var bPID int
	go func() { got <- b.QueryRow(ctx, "select pg_backend_pid()").Scan(&bPID) }()
	waiting()

	_, err = direct(t, c).Exec(ctx, "select pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	start := time.Now()
	_, err = tx.Exec(ctx, "select 1") // A learns of it here; the server is closed then
	require.Error(t, err)
	select {
	case err := <-got:
		require.NoError(t, err)
		require.NotEqual(t, pid, bPID, "B got a new server")
	case <-time.After(10 * time.Second):
		t.Fatal("B still waits after the server it waited for was closed")
	}
	require.Less(t, time.Since(start), 5*time.Second)
	_ = tx.Rollback(ctx)
}

// shutdownWhileWaiting: pool size 1 (cfg), a shutdown whose time is up ends B's wait for
// the server A's statement holds at once: B hears "shutting down" (or finds its socket
// closed by the same shutdown) before A's statement ends, which would serve it.
func shutdownWhileWaiting(t *testing.T, cfg pool.Config, mark waitMark) {
	c, p := adminProxy(t, cfg)
	ctx := ctxT(t, time.Minute)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	sleeping := asyncExec(ctx, a, "select pg_sleep(6)")
	admin := direct(t, c)
	require.Eventually(t, func() bool {
		var n int
		err := admin.QueryRow(ctx, "select count(*) from pg_stat_activity where query = 'select pg_sleep(6)' and state = 'active'").Scan(&n)
		return err == nil && n == 1
	}, 10*time.Second, 10*time.Millisecond)
	waiting := mark(t, p)
	waitErr := asyncExec(ctx, b, "select 1")
	waiting()

	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- p.Server.Shutdown(sctx) }()
	select {
	case err := <-waitErr:
		require.Error(t, err)
		if code := pgCode(err); code != "" {
			require.Equal(t, "57P01", code, "got %v", err)
			require.Contains(t, err.Error(), "shutting down")
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the wait outlived the shutdown")
	}
	require.Less(t, time.Since(start), 5*time.Second)
	select {
	case <-shut:
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	<-sleeping
}

func TestGoroutineWaitServerClosed(t *testing.T) {
	serverClosedWhileWaiting(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: 20 * time.Second}, consoleWaiting)
}

func TestGoroutineWaitShutdown(t *testing.T) {
	shutdownWhileWaiting(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: time.Minute}, consoleWaiting)
}
