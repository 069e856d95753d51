package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// The protocol-behaviour tests (behaviour_*_test.go) run a real pool.Server in front of
// pgmock servers, with a raw pgproto3 client, so that every message on both sides is
// the test's to say.

// behaviourTimeout bounds every wait of these tests; none should come near it.
const behaviourTimeout = 10 * time.Second

// startPool serves cmpool on 127.0.0.1:0 in front of primary, with trust logins, one
// server connection and transaction mode unless adjust says otherwise. It returns the
// address clients connect to.
func startPool(t *testing.T, primary *pgmock.Server, adjust func(*pool.Config)) string {
	t.Helper()
	return startPoolServer(t, primary, adjust, nil)
}

// startPoolServer is startPool that also stores the pool.Server in *srvOut, if not nil.
func startPoolServer(t *testing.T, primary *pgmock.Server, adjust func(*pool.Config), srvOut **pool.Server) string {
	t.Helper()
	cfg := pool.Config{
		Primary:         primary.URL("app", "app"),
		AuthType:        "trust",
		PoolMode:        pool.ModeTransaction,
		DefaultPoolSize: 1,
		Logger:          slog.New(slog.DiscardHandler),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	srv, err := pool.New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if srvOut != nil {
		*srvOut = srv
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), behaviourTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// wireClient is a raw protocol client of cmpool.
type wireClient struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
	key  pgproto3.BackendKeyData
}

// connectClient logs in to cmpool at addr as app to database app.
func connectClient(t *testing.T, addr string) *wireClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(behaviourTimeout))
	c := &wireClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	return c.login(nil)
}

// login sends the startup message, with params besides user and database, and reads the
// answer up to ReadyForQuery.
func (c *wireClient) login(params map[string]string) *wireClient {
	c.t.Helper()
	startup := map[string]string{"user": "app", "database": "app"}
	for k, v := range params {
		startup[k] = v
	}
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: startup})
	require.NoError(c.t, c.fe.Flush())
	for {
		msg, err := c.fe.Receive()
		require.NoError(c.t, err)
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk, *pgproto3.ParameterStatus:
		case *pgproto3.BackendKeyData:
			c.key = pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: append([]byte(nil), m.SecretKey...)}
		case *pgproto3.ReadyForQuery:
			return c
		default:
			c.t.Fatalf("login: unexpected %s", describeMsg(msg))
		}
	}
}

// send sends msgs in one write.
func (c *wireClient) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	require.NoError(c.t, c.fe.Flush())
}

// expect reads one message per want and fails unless each encodes to the same bytes.
func (c *wireClient) expect(want ...pgproto3.BackendMessage) {
	c.t.Helper()
	for i, w := range want {
		got, err := c.fe.Receive()
		require.NoError(c.t, err, "reply %d of %d: expected %s", i+1, len(want), describeMsg(w))
		wb, _ := w.Encode(nil)
		gb, _ := got.Encode(nil)
		require.Equal(c.t, describeMsg(w), describeMsg(got), "reply %d of %d", i+1, len(want))
		require.Equal(c.t, wb, gb, "reply %d of %d", i+1, len(want))
	}
}

// expectError reads an ErrorResponse with SQLSTATE code.
func (c *wireClient) expectError(code string) *pgproto3.ErrorResponse {
	c.t.Helper()
	got, err := c.fe.Receive()
	require.NoError(c.t, err)
	e, ok := got.(*pgproto3.ErrorResponse)
	require.True(c.t, ok, "expected an ErrorResponse %s, got %s", code, describeMsg(got))
	require.Equal(c.t, code, e.Code, "error: %s", e.Message)
	return e
}

func describeMsg(m any) string {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%T", m)
	}
	return fmt.Sprintf("%T %s", m, b)
}

// Messages the tests use often.
var (
	parseComplete = &pgproto3.ParseComplete{}
	bindComplete  = &pgproto3.BindComplete{}
	closeComplete = &pgproto3.CloseComplete{}
	syncMsg       = &pgproto3.Sync{}
	noData        = &pgproto3.NoData{}
	executeAll    = &pgproto3.Execute{}
)

func readyMsg(status byte) *pgproto3.ReadyForQuery { return &pgproto3.ReadyForQuery{TxStatus: status} }

func completeMsg(tag string) *pgproto3.CommandComplete {
	return &pgproto3.CommandComplete{CommandTag: []byte(tag)}
}

// serverStmt matches a Parse of query under one of cmpool's server-side names, and stores
// that name in *name.
func serverStmt(query string, name *string) pgmock.Step {
	return pgmock.ExpectMatch(fmt.Sprintf("a Parse of %q under a server-side name", query), func(m pgproto3.FrontendMessage) error {
		p, ok := m.(*pgproto3.Parse)
		if !ok {
			return fmt.Errorf("not a Parse")
		}
		if p.Query != query {
			return fmt.Errorf("query %q", p.Query)
		}
		if !strings.HasPrefix(p.Name, "cmpool_") {
			return fmt.Errorf("name %q is not cmpool's", p.Name)
		}
		*name = p.Name
		return nil
	})
}

// bindOf matches a Bind of the server-side statement in *name, to the unnamed portal.
func bindOf(name *string) pgmock.Step {
	return pgmock.ExpectMatch("a Bind of the server-side statement", func(m pgproto3.FrontendMessage) error {
		b, ok := m.(*pgproto3.Bind)
		if !ok {
			return fmt.Errorf("not a Bind")
		}
		if *name == "" || b.PreparedStatement != *name {
			return fmt.Errorf("statement %q, want %q", b.PreparedStatement, *name)
		}
		return nil
	})
}
