package pool_test

import (
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// A client's CancelRequest, with the key cmpool gave it, reaches the server running its
// query with that server's own key.
func TestBehaviourCancel(t *testing.T) {
	t.Parallel()
	primary := pgmock.NewServer(t, pgmock.Options{})
	var serverKey pgmock.Key
	running := make(chan struct{}) // closed once the query reached the server
	primary.Expect(
		pgmock.ExpectQuery("SELECT pg_sleep(60)"),
		pgmock.Do(func(c *pgmock.Conn) error {
			serverKey = c.Key()
			close(running)
			primary.WaitCancels(1, behaviourTimeout)
			return c.Send(pgmock.Error("57014", "canceling statement due to user request"), readyMsg('I'))
		}),
	)
	addr := startPool(t, primary, nil)
	c := connectClient(t, addr)
	c.send(&pgproto3.Query{String: "SELECT pg_sleep(60)"})
	// A cancel is only forwarded while the query runs on a server.
	select {
	case <-running:
	case <-time.After(behaviourTimeout):
		t.Fatal("the query never reached the server")
	}

	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(behaviourTimeout))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.CancelRequest{ProcessID: c.key.ProcessID, SecretKey: c.key.SecretKey})
	require.NoError(t, fe.Flush())

	c.expectError("57014")
	c.expect(readyMsg('I'))
	primary.Wait(behaviourTimeout)
	cancels := primary.Cancels()
	require.Len(t, cancels, 1)
	require.Equal(t, serverKey, cancels[0], "the cancel must carry the server's key")
	require.NotEqual(t, c.key.SecretKey, cancels[0].SecretKey, "cmpool's key must not reach the server")
}
