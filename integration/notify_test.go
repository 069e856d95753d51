package integration_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/cmlite/cmpool/pool"
)

// TestListenNotifyTransactionMode: 200 clients LISTEN through a pool of 5 servers in
// transaction mode; every NOTIFY reaches each of them once, in order, while the pool stays
// at 5 servers and one listening connection.
func TestListenNotifyTransactionMode(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 5})
	ctx := ctxT(t, 3*time.Minute)
	const listeners, notifications = 200, 20
	chanName := fmt.Sprintf("jobs_%d", time.Now().UnixNano())

	conns := make([]*pgx.Conn, listeners)
	for i := range conns {
		conns[i] = connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		_, err := conns[i].Exec(ctx, "LISTEN "+chanName)
		require.NoError(t, err)
	}
	// A client that does not listen on the channel never hears of it.
	other := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := other.Exec(ctx, "LISTEN "+chanName+"_other")
	require.NoError(t, err)

	// Each listener, even one in a transaction, still works as a client meanwhile.
	var n int
	require.NoError(t, conns[0].QueryRow(ctx, "SELECT 1").Scan(&n))

	notifier := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	for i := 1; i <= notifications; i++ {
		if i%2 == 0 {
			_, err = notifier.Exec(ctx, "SELECT pg_notify($1, $2)", chanName, strconv.Itoa(i))
		} else {
			_, err = notifier.Exec(ctx, "NOTIFY "+chanName+", '"+strconv.Itoa(i)+"'")
		}
		require.NoError(t, err)
	}

	var g errgroup.Group
	for i, conn := range conns {
		g.Go(func() error {
			for want := 1; want <= notifications; want++ {
				wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				nt, err := conn.WaitForNotification(wctx)
				cancel()
				if err != nil {
					return fmt.Errorf("listener %d, notification %d: %w", i, want, err)
				}
				if nt.Channel != chanName || nt.Payload != strconv.Itoa(want) {
					return fmt.Errorf("listener %d: got %q on %q, want payload %d (in order, once)", i, nt.Payload, nt.Channel, want)
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())

	// Nothing more is pending: no duplicates.
	for _, conn := range []*pgx.Conn{conns[0], conns[listeners-1], other} {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		nt, err := conn.WaitForNotification(wctx)
		cancel()
		require.Error(t, err, "unexpected notification %+v", nt)
	}

	d := direct(t, c)
	var listenerConns, poolConns int
	require.NoError(t, d.QueryRow(ctx, `SELECT count(*) FILTER (WHERE application_name = 'cmpool listener'),
		count(*) FILTER (WHERE application_name <> 'cmpool listener')
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&listenerConns, &poolConns))
	require.Equal(t, 1, listenerConns, "one listening connection for the database")
	require.LessOrEqual(t, poolConns, 5+1, "the pool's servers (and the console's, if any)")
}

// TestListenIsolationAndCleanup: with one server, client A's LISTEN reaches only A; UNLISTEN,
// UNLISTEN *, DISCARD ALL and A's exit end it; LISTEN with other statements is refused.
func TestListenIsolationAndCleanup(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 2*time.Minute)
	ch := fmt.Sprintf("iso_%d", time.Now().UnixNano())
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	// The notifier does not go through cmpool: A's transaction holds its one server.
	notifier := direct(t, c)

	notify := func(payload string) {
		t.Helper()
		_, err := notifier.Exec(ctx, "NOTIFY "+ch+", '"+payload+"'")
		require.NoError(t, err)
	}
	expect := func(conn *pgx.Conn, payload string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		nt, err := conn.WaitForNotification(wctx)
		require.NoError(t, err)
		require.Equal(t, payload, nt.Payload)
	}
	expectNone := func(conn *pgx.Conn) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		nt, err := conn.WaitForNotification(wctx)
		require.Error(t, err, "unexpected notification %+v", nt)
	}

	_, err := a.Exec(ctx, "LISTEN "+ch)
	require.NoError(t, err)
	notify("1")
	expect(a, "1")
	expectNone(b)

	// A notification reaches A in the middle of its transaction, and the transaction goes on.
	tx, err := a.Begin(ctx)
	require.NoError(t, err)
	var one int
	require.NoError(t, tx.QueryRow(ctx, "SELECT 1").Scan(&one))
	notify("2")
	expect(a, "2")
	require.NoError(t, tx.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.NoError(t, tx.Commit(ctx))

	_, err = a.Exec(ctx, "UNLISTEN "+ch)
	require.NoError(t, err)
	notify("3")
	expectNone(a)

	_, err = a.Exec(ctx, "LISTEN "+ch)
	require.NoError(t, err)
	_, err = a.Exec(ctx, "UNLISTEN *")
	require.NoError(t, err)
	notify("4")
	expectNone(a)

	_, err = a.Exec(ctx, "LISTEN "+ch)
	require.NoError(t, err)
	_, err = a.Exec(ctx, "DISCARD ALL")
	require.NoError(t, err)
	notify("5")
	expectNone(a)

	_, err = a.Exec(ctx, "LISTEN "+ch+"; SELECT 1")
	require.Equal(t, "0A000", pgCode(err), "got %v", err)

	// B listens, leaves, and a new client on the same server hears nothing of it.
	_, err = b.Exec(ctx, "LISTEN "+ch)
	require.NoError(t, err)
	require.NoError(t, b.Close(ctx))
	c2 := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	notify("6")
	expectNone(c2)
	expectNone(a)
}

// TestListenerConnectionLost: when the listening connection's server process is
// terminated, cmpool opens it again and listens again; the client is told notifications
// may have been lost, and later notifications reach it.
func TestListenerConnectionLost(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 2*time.Minute)
	ch := fmt.Sprintf("lost_%d", time.Now().UnixNano())

	var mu sync.Mutex
	var warnings []string
	cfg, err := pgx.ParseConfig(p.URL("", ""))
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		warnings = append(warnings, n.Message)
	}
	a, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	_, err = a.Exec(ctx, "LISTEN "+ch)
	require.NoError(t, err)

	d := direct(t, c)
	var killed bool
	require.NoError(t, d.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'cmpool listener' AND datname = current_database()`).Scan(&killed))
	require.True(t, killed)

	// Notifications sent once the listener is back reach the client; the first ones may
	// be sent before it is, so keep sending until one arrives.
	notifier := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	deadline := time.Now().Add(30 * time.Second)
	got := ""
	for i := 0; got == "" && time.Now().Before(deadline); i++ {
		_, err := notifier.Exec(ctx, "NOTIFY "+ch+", 'after "+strconv.Itoa(i)+"'")
		require.NoError(t, err)
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		nt, err := a.WaitForNotification(wctx)
		cancel()
		if err == nil {
			got = nt.Payload
		}
	}
	require.True(t, strings.HasPrefix(got, "after "), "no notification after the listener came back")
	// The notice came before the notification; a query makes sure pgx has read it.
	var one int
	require.NoError(t, a.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range warnings {
			if strings.Contains(w, "may have been lost") {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "the client is told notifications may have been lost")
}
