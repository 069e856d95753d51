package integration_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// Idle clients are parked (pool/park.go): no goroutine, their sockets in an epoll set.
// These tests drive parked clients through everything that can reach them: their own next
// request, session state kept across parking, disconnection, KILL_CLIENT, a drain, and
// the idle timeouts, which keep a client from being parked.

// parked waits until the proxy has n parked clients.
func parked(t *testing.T, p *integration.Proxy, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Server.Stat().ParkedClients == n }, 30*time.Second, 20*time.Millisecond,
		"parked clients: %d, want %d", p.Server.Stat().ParkedClients, n)
}

// idleModes are the ways an idle client gives up its goroutine: parked after
// ParkIdleAfter; suspended at once on an event loop (pool/loops.go), with parking off; and
// suspended on a loop, then parked after ParkIdleAfter, with its socket out of the loop.
var idleModes = []struct {
	name string
	cfg  pool.Config
}{
	{"parked", pool.Config{ParkIdleAfter: 100 * time.Millisecond}},
	{"event-loops", pool.Config{EventLoops: 2, ParkIdleAfter: -1}},
	{"event-loops-parked", pool.Config{EventLoops: 2, ParkIdleAfter: 100 * time.Millisecond}},
}

// parkedOffLoops waits until n clients are parked in the park set, none of them left
// suspended on an event loop.
func parkedOffLoops(t *testing.T, p *integration.Proxy, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := p.Server.Stat()
		return st.ParkedClients == n && st.EventLoops.Idle == 0
	}, 30*time.Second, 20*time.Millisecond, "parked clients: %+v, want %d off the loops", p.Server.Stat(), n)
}

func TestParkedClients(t *testing.T) {
	for _, m := range idleModes {
		t.Run(m.name, func(t *testing.T) {
			cfg := m.cfg
			cfg.DefaultPoolSize = 1 // one server for 100 clients: every request of a resumed client needs it in turn
			testParkedClients(t, cfg)
		})
	}
}

func testParkedClients(t *testing.T, cfg pool.Config) {
	_, p := adminProxy(t, cfg)
	ctx := ctxT(t, 2*time.Minute)
	const n = 100
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		mode := pgx.QueryExecModeCacheStatement // prepared statements kept across parking
		if i%2 == 1 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		conns[i] = connect(t, p.URL("", "")+fmt.Sprintf("&application_name=park%d", i), mode)
		_, err := conns[i].Exec(ctx, fmt.Sprintf("set work_mem = '%dkB'", 4100+i))
		require.NoError(t, err)
	}
	parked(t, p, n)
	if cfg.EventLoops != 0 && cfg.ParkIdleAfter > 0 {
		parkedOffLoops(t, p, n)
	}

	// Each client, resumed by its own request, still has its own settings and its
	// statements; then it is parked again.
	for round := range 2 {
		for i, conn := range conns {
			var app, timeout string
			var x int
			require.NoError(t, conn.QueryRow(ctx, "select current_setting('application_name'), current_setting('work_mem'), $1::int",
				i).Scan(&app, &timeout, &x), "round %d client %d", round, i)
			require.Equal(t, fmt.Sprintf("park%d", i), app)
			require.Equal(t, fmt.Sprintf("%dkB", 4100+i), timeout)
			require.Equal(t, i, x)
		}
		parked(t, p, n)
	}

	// Clients that hang up while parked are gone from the server's count.
	for _, conn := range conns[n/2:] {
		require.NoError(t, conn.Close(ctx))
	}
	parked(t, p, n/2)
	require.Eventually(t, func() bool { return p.Server.Stat().Clients == n/2 }, 10*time.Second, 20*time.Millisecond,
		"clients: %d", p.Server.Stat().Clients)

	// KILL_CLIENT reaches a parked client: it hears why at its next request.
	console := adminConn(t, p, "pgbouncer", "postgres")
	parked(t, p, n/2) // the console's own client is never parked
	// SHOW CLIENTS shows a parked client's addresses (a parked client has given up its
	// net.Conn and kept them: pool/parkconn.go).
	names, _, rows := show(t, console, "SHOW CLIENTS")
	for _, i := range []int{1, 2} {
		app := fmt.Sprintf("park%d", i)
		local := conns[i].PgConn().Conn().LocalAddr().(*net.TCPAddr)
		remote := conns[i].PgConn().Conn().RemoteAddr().(*net.TCPAddr)
		require.Equal(t, local.IP.String(), column(t, names, rows, "application_name", app, "addr"), app)
		require.Equal(t, strconv.Itoa(local.Port), column(t, names, rows, "application_name", app, "port"), app)
		require.Equal(t, remote.IP.String(), column(t, names, rows, "application_name", app, "local_addr"), app)
		require.Equal(t, strconv.Itoa(remote.Port), column(t, names, rows, "application_name", app, "local_port"), app)
	}
	parked(t, p, n/2)

	_, err := console.Exec(ctx, "KILL_CLIENT "+clientID(t, console, "park0"))
	require.NoError(t, err)
	_, err = conns[0].Exec(ctx, "select 1")
	require.Error(t, err)
	require.Equal(t, "57P01", pgCode(err), "killed parked client: %v", err)

	// A drain closes the parked clients at once and ends.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, p.Server.Shutdown(sctx))
	for _, conn := range conns[1 : n/2] {
		_, err := conn.Exec(ctx, "select 1")
		require.Error(t, err, "a parked client still served after the drain")
	}
	require.Zero(t, p.Server.Stat().Clients)
}

func TestParkingKeepsIdleTimeouts(t *testing.T) {
	forIdleTimeoutModes(t, func(t *testing.T, cfg pool.Config) {
		cfg.ClientIdleTimeout, cfg.IdleTransactionTimeout = 1500*time.Millisecond, 1500*time.Millisecond
		testParkingKeepsIdleTimeouts(t, cfg)
	})
}

// forIdleTimeoutModes runs test in each idle mode, with two servers and clients parked
// soon after they go idle.
func forIdleTimeoutModes(t *testing.T, test func(*testing.T, pool.Config)) {
	for _, m := range idleModes {
		t.Run(m.name, func(t *testing.T) {
			cfg := m.cfg
			cfg.DefaultPoolSize = 2
			if cfg.ParkIdleAfter > 0 {
				cfg.ParkIdleAfter = 50 * time.Millisecond
			}
			test(t, cfg)
		})
	}
}

// idleAndInTx starts a proxy with cfg and two clients of it: idle, which has run a query,
// and inTx, which has begun a transaction.
func idleAndInTx(t *testing.T, cfg pool.Config) (c *integration.Cluster, p *integration.Proxy, ctx context.Context, idle, inTx *pgx.Conn) {
	c, p = proxy(t, cfg)
	ctx = ctxT(t, time.Minute)
	idle = connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	inTx = connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := idle.Exec(ctx, "select 1")
	require.NoError(t, err)
	_, err = inTx.Exec(ctx, "begin")
	require.NoError(t, err)
	return c, p, ctx, idle, inTx
}

func testParkingKeepsIdleTimeouts(t *testing.T, cfg pool.Config) {
	_, p, ctx, idle, inTx := idleAndInTx(t, cfg)
	var err error
	// Neither is parked while its timeout runs, and both timeouts fire.
	time.Sleep(500 * time.Millisecond)
	require.Zero(t, p.Server.Stat().ParkedClients)
	time.Sleep(1500 * time.Millisecond)
	_, err = idle.Exec(ctx, "select 1")
	require.Error(t, err)
	require.Equal(t, "57P05", pgCode(err), "idle client: %v", err)
	_, err = inTx.Exec(ctx, "select 1")
	require.Error(t, err)
	require.Equal(t, "25P03", pgCode(err), "idle in transaction: %v", err)
}

// TestIdleTimeoutTurnedOnByReload: a client_idle_timeout turned on by a reload times the
// clients idle at that moment, parked (or waiting on an event loop) or not, from the
// reload on, as it times clients that become idle later; a client busy in a transaction is
// not touched by it.
func TestIdleTimeoutTurnedOnByReload(t *testing.T) {
	forIdleTimeoutModes(t, testIdleTimeoutTurnedOnByReload)
}

func testIdleTimeoutTurnedOnByReload(t *testing.T, cfg pool.Config) {
	c, p, ctx, idle, inTx := idleAndInTx(t, cfg)
	var err error
	// Parked: the idle client (a client with a server never parks). On the loops, the
	// client in the transaction waits there too, between its statements.
	waiting := 1
	if cfg.EventLoops != 0 {
		waiting = 2
	}
	require.Eventually(t, func() bool { return p.Server.Stat().ParkedClients >= waiting }, 10*time.Second, 20*time.Millisecond,
		"the idle client gives up its goroutine")

	next := cfg
	next.Primary = c.Primary.URL("", "")
	next.ClientIdleTimeout = time.Second
	require.NoError(t, p.Server.Reload(integration.WithTestAuth(next)))
	start := time.Now()
	// (On the loops the client in the transaction, whose BEGIN cmpool holds back, holds no
	// server either: it is woken too, and left untimed.)
	require.Eventually(t, func() bool { return p.Server.Stat().ParkedClients < waiting }, 5*time.Second, 20*time.Millisecond,
		"the parked client is woken to be timed")
	time.Sleep(1500 * time.Millisecond)
	_, err = idle.Exec(ctx, "select 1")
	require.Equal(t, "57P05", pgCode(err), "the idle client is closed by the timeout the reload turned on: %v", err)
	require.Less(t, time.Since(start), 10*time.Second)

	// The transaction is untouched by client_idle_timeout (idle_transaction_timeout is off).
	var n int
	require.NoError(t, inTx.QueryRow(ctx, "select 41 + 1").Scan(&n))
	_, err = inTx.Exec(ctx, "commit")
	require.NoError(t, err)
	// A client that logs in after the reload is timed too.
	late := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	time.Sleep(1500 * time.Millisecond)
	_, err = late.Exec(ctx, "select 1")
	require.Equal(t, "57P05", pgCode(err), "%v", err)
}
