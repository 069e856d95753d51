package integration_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestObserverHookHoldsNoLock: cmpool calls Config.Observer holding no lock of the
// client's. While the hook for a client's query blocks, the admin console's SHOW CLIENTS,
// which reads every client's state, still answers, and the hook itself may call back
// into cmpool (Stat).
func TestObserverHookHoldsNoLock(t *testing.T) {
	var (
		armed   atomic.Bool
		entered = make(chan pool.Stat, 1)
		release = make(chan struct{})
		once    sync.Once
		srv     atomic.Pointer[pool.Server]
	)
	hook := pool.ObserverFunc(func(e pool.Event) {
		if e.Kind != pool.EventQuery || !armed.CompareAndSwap(true, false) {
			return
		}
		entered <- srv.Load().Stat()
		<-release
	})
	_, p := adminProxy(t, pool.Config{Observer: hook})
	srv.Store(p.Server)
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	ctx := ctxT(t, 30*time.Second)
	app := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	console := adminConn(t, p, "pgbouncer", "postgres")

	armed.Store(true)
	done := make(chan error, 1)
	go func() { _, err := app.Exec(ctx, "select 1"); done <- err }()
	st := <-entered
	require.Positive(t, st.Clients)

	// The hook is blocked; the console must still see the client.
	names, _, rows := show(t, console, "SHOW CLIENTS")
	require.Len(t, rows, 2, "%v: %v", names, rows)

	once.Do(func() { close(release) })
	require.NoError(t, <-done)
}

// TestPipelineWithLocalCommand: a query and, in the same write, a command cmpool answers
// itself (DISCARD ALL in transaction mode). cmpool answers the command after the query's
// replies, so the query must reach the server before cmpool waits for them.
func TestPipelineWithLocalCommand(t *testing.T) {
	_, p := proxy(t, pool.Config{})
	ctx := ctxT(t, 30*time.Second)
	conn, err := pgconn.Connect(ctx, p.URL("", ""))
	require.NoError(t, err)
	hc, err := conn.Hijack()
	require.NoError(t, err)
	t.Cleanup(func() { _ = hc.Conn.Close() })
	q1, _ := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	q2, _ := (&pgproto3.Query{String: "DISCARD ALL"}).Encode(nil)
	_, err = hc.Conn.Write(append(q1, q2...))
	require.NoError(t, err)
	require.NoError(t, hc.Conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	var tags []string
	for ready := 0; ready < 2; {
		msg, err := hc.Frontend.Receive()
		require.NoError(t, err, "replies so far: %v", tags)
		switch m := msg.(type) {
		case *pgproto3.CommandComplete:
			tags = append(tags, string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s: %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	require.Equal(t, []string{"SELECT 1", "DISCARD ALL"}, tags)
}
