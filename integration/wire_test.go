package integration_test

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// rawClient speaks the wire protocol to the proxy by hand, for input no driver sends.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func dialRaw(t *testing.T, addr string) *rawClient {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(15*time.Second)))
	return &rawClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
}

func (c *rawClient) send(msgs ...pgproto3.FrontendMessage) {
	for _, m := range msgs {
		c.fe.Send(m)
	}
	require.NoError(c.t, c.fe.Flush())
}

func (c *rawClient) login(user string) {
	c.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": user, "database": "postgres"}})
	c.until(func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ReadyForQuery); return ok })
}

// until reads messages until done returns true, failing on an ErrorResponse.
func (c *rawClient) until(done func(pgproto3.BackendMessage) bool) {
	for {
		m, err := c.fe.Receive()
		require.NoError(c.t, err)
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			c.t.Fatalf("unexpected error %s: %s", e.Code, e.Message)
		}
		if done(m) {
			return
		}
	}
}

// expectError reads until an ErrorResponse and returns it.
func (c *rawClient) expectError() *pgproto3.ErrorResponse {
	for {
		m, err := c.fe.Receive()
		require.NoError(c.t, err, "wanted an ErrorResponse")
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			cp := *e
			return &cp
		}
	}
}

// expectClosed checks that the proxy closes the connection.
func (c *rawClient) expectClosed() {
	buf := make([]byte, 1024)
	for {
		_, err := c.conn.Read(buf)
		if err != nil {
			var ne net.Error
			require.False(c.t, errorAs(err, &ne) && ne.Timeout(), "connection was not closed")
			return
		}
	}
}

func errorAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func TestHostileInput(t *testing.T) {
	c, p := proxy(t, pool.Config{MaxPacketSize: 64 << 10, ClientLoginTimeout: 500 * time.Millisecond})

	t.Run("message over max_packet_size", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		rc.login("postgres")
		hdr := []byte{'Q', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(hdr[1:], 1<<20)
		_, err := rc.conn.Write(hdr)
		require.NoError(t, err)
		e := rc.expectError()
		require.Equal(t, "08P01", e.Code)
		require.Equal(t, "FATAL", e.Severity)
		rc.expectClosed()
	})
	t.Run("unknown message type", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		rc.login("postgres")
		_, err := rc.conn.Write([]byte{'!', 0, 0, 0, 4})
		require.NoError(t, err)
		require.Equal(t, "08P01", rc.expectError().Code)
		rc.expectClosed()
	})
	t.Run("bad length", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		rc.login("postgres")
		_, err := rc.conn.Write([]byte{'Q', 0, 0, 0, 2})
		require.NoError(t, err)
		require.Equal(t, "08P01", rc.expectError().Code)
		rc.expectClosed()
	})
	t.Run("second startup message", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		rc.login("postgres")
		rc.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "postgres"}})
		require.Equal(t, "08P01", rc.expectError().Code)
		rc.expectClosed()
	})
	t.Run("protocol 2", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		pkt := []byte{0, 0, 0, 8, 0, 2, 0, 0}
		_, err := rc.conn.Write(pkt)
		require.NoError(t, err)
		require.Equal(t, "0A000", rc.expectError().Code)
		rc.expectClosed()
	})
	t.Run("oversized startup packet", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		_, err := rc.conn.Write([]byte{0, 0, 0x40, 0, 0, 3, 0, 0})
		require.NoError(t, err)
		require.Equal(t, "08P01", rc.expectError().Code)
		rc.expectClosed()
	})
	t.Run("silent client is cut at client_login_timeout", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		start := time.Now()
		e := rc.expectError()
		require.Equal(t, "08P01", e.Code)
		require.Contains(t, e.Message, "client_login_timeout")
		rc.expectClosed()
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("ssl request answered N then startup works", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		_, err := rc.conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
		require.NoError(t, err)
		b := make([]byte, 1)
		_, err = rc.conn.Read(b)
		require.NoError(t, err)
		require.Equal(t, byte('N'), b[0])
		rc.login("postgres")
	})
	t.Run("bare sync and copy data outside copy", func(t *testing.T) {
		rc := dialRaw(t, p.Addr)
		rc.login("postgres")
		rc.send(&pgproto3.CopyData{Data: []byte("stray")}, &pgproto3.Sync{})
		rc.until(func(m pgproto3.BackendMessage) bool {
			z, ok := m.(*pgproto3.ReadyForQuery)
			return ok && z.TxStatus == 'I'
		})
		rc.send(&pgproto3.Query{String: "select 1"})
		rc.until(func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ReadyForQuery); return ok })
	})

	// None of that left a server dirty or broke the proxy.
	assertNoDirtyServers(t, c)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	var n int
	require.NoError(t, conn.QueryRow(ctxT(t, 5*time.Second), "select $1::int", 5).Scan(&n))
	require.Equal(t, 5, n)
}

func TestNoticesAndNotifications(t *testing.T) {
	c, p := proxy(t, pool.Config{PoolMode: pool.ModeSession})
	ctx := ctxT(t, 30*time.Second)
	var notices []string
	cfg, err := pgx.ParseConfig(p.URL("", ""))
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	_, err = conn.Exec(ctx, "do $$ begin raise notice 'first'; raise notice 'second'; end $$")
	require.NoError(t, err)
	require.Equal(t, []string{"first", "second"}, notices)

	// LISTEN needs session mode; a NOTIFY from elsewhere arrives while the client idles.
	_, err = conn.Exec(ctx, "listen cmpool_chan")
	require.NoError(t, err)
	_, err = direct(t, c).Exec(ctx, "notify cmpool_chan, 'hello'")
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	require.NoError(t, err)
	require.Equal(t, "cmpool_chan", n.Channel)
	require.Equal(t, "hello", n.Payload)
}
