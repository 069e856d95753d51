package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// Waiting for a server on the event loops (pool/claim.go): a session on a loop that finds
// no idle server files a claim and gives the loop up, and the server given back next is
// handed to it. These tests drive every way such a wait ends: a server handed over (with
// the two-clients-one-server rules), query_wait_timeout, KILL_CLIENT, and a server closed
// instead of given back.

// claimWaits waits until the proxy has taken n waits for a server as claims in all.
func claimWaits(t *testing.T, p *integration.Proxy, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Server.Stat().EventLoops.ServerWaits >= n }, 10*time.Second, 5*time.Millisecond,
		"server waits taken as claims: %d, want %d", p.Server.Stat().EventLoops.ServerWaits, n)
}

// asyncExec runs sql on conn in a goroutine; the channel gets its error.
func asyncExec(ctx context.Context, conn *pgx.Conn, sql string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, sql)
		done <- err
	}()
	return done
}

// TestEventLoopClaimHandoff: pool size 1. A holds the server in a transaction after
// changing its session by SET; B's request waits as a claim; when A commits, the server
// is handed to B, which must see none of A's session, and A keeps its own.
func TestEventLoopClaimHandoff(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2})
	ctx := ctxT(t, time.Minute)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		a := connect(t, p.URL("", ""), mode)
		b := connect(t, p.URL("", ""), mode)
		_, err := a.Exec(ctx, "set application_name = 'client_a'")
		require.NoError(t, err)
		_, err = a.Exec(ctx, "set statement_timeout = '4321s'")
		require.NoError(t, err)
		tx, err := a.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "set local work_mem = '7777kB'")
		require.NoError(t, err)

		before := p.Server.Stat().EventLoops
		type seen struct {
			app, timeout, workMem string
			err                   error
		}
		got := make(chan seen, 1)
		go func() {
			var s seen
			s.err = b.QueryRow(ctx, "select current_setting('application_name'), current_setting('statement_timeout'), current_setting('work_mem')").
				Scan(&s.app, &s.timeout, &s.workMem)
			got <- s
		}()
		claimWaits(t, p, before.ServerWaits+1)
		select {
		case s := <-got:
			t.Fatalf("B was answered while A held the only server: %+v", s)
		case <-time.After(100 * time.Millisecond):
		}
		require.NoError(t, tx.Commit(ctx))
		s := <-got
		require.NoError(t, s.err)
		require.NotEqual(t, "client_a", s.app, "B sees A's application_name")
		require.NotEqual(t, "4321s", s.timeout, "B sees A's statement_timeout")
		require.NotEqual(t, "7777kB", s.workMem, "B sees A's SET LOCAL")
		after := p.Server.Stat().EventLoops
		require.Greater(t, after.ServerWaitsHanded, before.ServerWaitsHanded, "the server was handed to B's claim")

		var app, timeout string
		require.NoError(t, a.QueryRow(ctx, "select current_setting('application_name'), current_setting('statement_timeout')").Scan(&app, &timeout))
		require.Equal(t, "client_a", app, "A keeps its session")
		require.Equal(t, "4321s", timeout, "A keeps its session")
	}
}

// TestEventLoopClaimEnds: a wait taken as a claim ends by query_wait_timeout (the client
// hears 57014 and goes on) and by KILL_CLIENT (57P01), and neither leaks the server.
func TestEventLoopClaimEnds(t *testing.T) {
	_, p := adminProxy(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2, QueryWaitTimeout: 700 * time.Millisecond})
	ctx := ctxT(t, time.Minute)
	holder := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", "")+"&application_name=claim_b", pgx.QueryExecModeSimpleProtocol)
	k := connect(t, p.URL("", "")+"&application_name=claim_k", pgx.QueryExecModeCacheStatement)
	console := adminConn(t, p, "pgbouncer", "postgres")

	tx, err := holder.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "select 1")
	require.NoError(t, err)

	// query_wait_timeout, twice: the second wait reuses what the first armed.
	for range 2 {
		before := p.Server.Stat().EventLoops.ServerWaits
		start := time.Now()
		_, err = b.Exec(ctx, "select 1")
		require.Equal(t, "57014", pgCode(err), "got %v", err)
		require.Contains(t, err.Error(), "query_wait_timeout")
		require.Less(t, time.Since(start), 5*time.Second)
		require.Greater(t, p.Server.Stat().EventLoops.ServerWaits, before, "the wait was a claim")
	}

	// KILL_CLIENT ends a claim at once.
	before := p.Server.Stat().EventLoops.ServerWaits
	done := asyncExec(ctx, k, "select 2")
	claimWaits(t, p, before+1)
	_, err = console.Exec(ctx, "KILL_CLIENT "+clientID(t, console, "claim_k"))
	require.NoError(t, err)
	select {
	case err := <-done:
		require.Equal(t, "57P01", pgCode(err), "got %v", err)
	case <-time.After(500 * time.Millisecond):
		t.Fatal("KILL_CLIENT did not end the wait before query_wait_timeout")
	}

	require.GreaterOrEqual(t, p.Server.Stat().EventLoops.ServerWaitsOther, uint64(3), "two timeouts and a kill ended claims")

	// Nothing was lent to the ended waits: the holder still has the only server, and once
	// it commits, B gets it.
	var one int
	require.NoError(t, tx.QueryRow(ctx, "select 1").Scan(&one))
	require.NoError(t, tx.Commit(ctx))
	for i := range 5 {
		require.NoError(t, b.QueryRow(ctx, "select $1::int", i).Scan(&one))
		require.Equal(t, i, one)
	}
	// The server goes back just after the client has its answer: wait for it.
	require.Eventually(t, func() bool {
		for _, r := range consoleRows(t, console, "SHOW POOLS") {
			if r["database"] == "postgres" && (r["sv_active"] != "0" || r["cl_waiting"] != "0" || r["sv_idle"] != "1") {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "the one server is idle, and nobody waits")
}

// TestEventLoopClaimServerClosed: the server A holds dies while B waits for it as a claim.
// It is closed, not given back, so B's wait cannot end with it: B must get a new
// connection, long before query_wait_timeout.
func TestEventLoopClaimServerClosed(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2, QueryWaitTimeout: 20 * time.Second})
	ctx := ctxT(t, time.Minute)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	tx, err := a.Begin(ctx)
	require.NoError(t, err)
	var pid int
	require.NoError(t, tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))

	before := p.Server.Stat().EventLoops.ServerWaits
	got := make(chan error, 1)
	var bPID int
	go func() { got <- b.QueryRow(ctx, "select pg_backend_pid()").Scan(&bPID) }()
	claimWaits(t, p, before+1)

	admin := direct(t, c)
	_, err = admin.Exec(ctx, "select pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	start := time.Now()
	// A learns of it at its next request; the server is closed then.
	_, err = tx.Exec(ctx, "select 1")
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

// TestEventLoopClaimLoad: 60 clients of three pgx modes on 3 servers, with a
// query_wait_timeout that no wait may reach: every request is answered right, most waits
// are claims, and the servers handed from client to client keep no session state of the
// client before (each client checks its own application_name and a SET of its own).
func TestEventLoopClaimLoad(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 3, EventLoops: 2, QueryWaitTimeout: time.Minute})
	ctx := ctxT(t, 3*time.Minute)
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement}
	const clients, rounds = 60, 30
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connect(t, p.URL("", "")+fmt.Sprintf("&application_name=claim%d", i), modes[i%len(modes)])
		_, err := conns[i].Exec(ctx, fmt.Sprintf("set extra_float_digits = %d", i%4))
		require.NoError(t, err)
	}
	before := p.Server.Stat().EventLoops
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, conn := range conns {
		wg.Go(func() {
			for r := range rounds {
				var app, digits string
				var x int
				err := conn.QueryRow(ctx, "select current_setting('application_name'), current_setting('extra_float_digits'), $1::int", i*1000+r).
					Scan(&app, &digits, &x)
				if err == nil && (app != fmt.Sprintf("claim%d", i) || digits != fmt.Sprint(i%4) || x != i*1000+r) {
					err = fmt.Errorf("round %d: got %q %q %d", r, app, digits, x)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := p.Server.Stat().EventLoops
	waits, handoffs := st.ServerWaits-before.ServerWaits, st.ServerWaitsHanded-before.ServerWaitsHanded
	t.Logf("claims: %d waits, %d handed a server; workers detached %d (watchdog %d)", waits, handoffs, st.Detached-before.Detached, st.Watchdog-before.Watchdog)
	require.Positive(t, waits, "requests waited for a server as claims")
	require.Positive(t, handoffs)
}

// TestEventLoopClaimShutdown: a shutdown whose time is up ends the waits for a server
// taken as claims at once, as it ends goroutines' waits: the waiting client hears
// "shutting down" while the one server is still busy.
func TestEventLoopClaimShutdown(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2, QueryWaitTimeout: time.Minute})
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
	st := p.Server.Stat().EventLoops
	before, other, handed := st.ServerWaits, st.ServerWaitsOther, st.ServerWaitsHanded
	waiting := asyncExec(ctx, b, "select 1")
	claimWaits(t, p, before+1)

	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- p.Server.Shutdown(sctx) }()
	// Before A's statement ends and gives the server back, which would serve B. The client
	// may hear the FATAL, or find its socket closed first by the same shutdown.
	select {
	case err := <-waiting:
		require.Error(t, err)
		if code := pgCode(err); code != "" {
			require.Equal(t, "57P01", code, "got %v", err)
			require.Contains(t, err.Error(), "shutting down")
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the claim outlived the shutdown")
	}
	require.Eventually(t, func() bool { return p.Server.Stat().EventLoops.ServerWaitsOther > other }, time.Second, 5*time.Millisecond,
		"the claim was ended, not handed A's server")
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, handed, p.Server.Stat().EventLoops.ServerWaitsHanded)
	select {
	case <-shut:
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	<-sleeping
}
