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
		got := sessionSettings(ctx, b)
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

// claimWaiting is the waitMark of the event loops: the wait is taken as a claim.
func claimWaiting(t *testing.T, p *integration.Proxy) func() {
	before := p.Server.Stat().EventLoops.ServerWaits
	return func() { claimWaits(t, p, before+1) }
}

// TestEventLoopClaimServerClosed: the server A holds dies while B waits for it as a claim
// (serverClosedWhileWaiting, goroutinewait_test.go). It is closed, not given back, so B's
// wait cannot end with it: B must get a new connection.
func TestEventLoopClaimServerClosed(t *testing.T) {
	serverClosedWhileWaiting(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2, QueryWaitTimeout: 20 * time.Second}, claimWaiting)
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
// taken as claims at once, as it ends goroutines' waits (shutdownWhileWaiting), and the
// claim is ended, not handed the busy server.
func TestEventLoopClaimShutdown(t *testing.T) {
	var p *integration.Proxy
	var st pool.EventLoopStat
	mark := func(t *testing.T, px *integration.Proxy) func() {
		p, st = px, px.Server.Stat().EventLoops
		return claimWaiting(t, px)
	}
	shutdownWhileWaiting(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2, QueryWaitTimeout: time.Minute}, mark)
	require.Eventually(t, func() bool { return p.Server.Stat().EventLoops.ServerWaitsOther > st.ServerWaitsOther }, 5*time.Second, 5*time.Millisecond,
		"the claim was ended")
	require.Equal(t, st.ServerWaitsHanded, p.Server.Stat().EventLoops.ServerWaitsHanded, "the claim was not handed A's server")
}
