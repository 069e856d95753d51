package pool_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// rawFrame is a backend message with the given type and body, its length field right.
func rawFrame(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// badReplies are what a faulty backend sends for a query named after each case, after a
// RowDescription: a reply the relay must refuse.
var badReplies = map[string][]byte{
	// A DataRow whose length field is below the minimum.
	"datarow-bogus-length": {'D', 0, 0, 0, 2},
	// A message type no server sends.
	"unknown-type": append(rawFrame('Y', "what"), rawFrame('Z', "I")...),
	// A ParameterStatus whose value has no terminator.
	"parameter-status-unterminated": append(rawFrame('S', "application_name\x00x"), rawFrame('Z', "I")...),
	// A ReadyForQuery whose status is none of I, T and E.
	"ready-bad-status": rawFrame('Z', "X"),
	// A ReadyForQuery with a body too long.
	"ready-long": rawFrame('Z', "II"),
	// A DataRow cut short, then the connection closes.
	"truncated": append([]byte{'D', 0, 0, 0, 100, 0, 1}, "abc"...),
}

// faultyBackend is a fake server that answers every simple query with one row, except a
// query whose text is a key of badReplies, which gets a RowDescription and that reply (and
// a closed connection after "truncated"). BEGIN and COMMIT open and close a transaction
// block.
func faultyBackend(tb testing.TB) string {
	return fakeServer(tb, serveFaulty)
}

func serveFaulty(conn net.Conn) {
	defer conn.Close()
	be, ok := fakeLogin(conn)
	if !ok {
		return
	}
	row := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
	status := byte('I')
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			if m.String == "BEGIN" || m.String == "COMMIT" {
				status = map[string]byte{"BEGIN": 'T', "COMMIT": 'I'}[m.String]
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte(m.String)})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: status})
				if err := be.Flush(); err != nil {
					return
				}
				continue
			}
			be.Send(row)
			if bad, ok := badReplies[m.String]; ok {
				if err := be.Flush(); err != nil {
					return
				}
				if _, err := conn.Write(bad); err != nil || m.String == "truncated" {
					return
				}
				continue
			}
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(m.String)}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: status})
			if err := be.Flush(); err != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

// faultyProxy serves cmpool in front of a faulty backend, with two servers at most.
func faultyProxy(t *testing.T, mode pool.Mode) (*pool.Server, string) {
	srv, addr := serveProxy(t, pool.Config{AuthType: "trust", Primary: "postgres://bench@" + faultyBackend(t) + "/bench?sslmode=disable",
		DefaultPoolSize: 2, PoolMode: mode})
	return srv, "postgres://bench@" + addr.String() + "/bench?sslmode=disable"
}

// serverCount is the number of server connections of srv's only pool.
func serverCount(srv *pool.Server) int {
	n := 0
	for _, p := range srv.Stat().Pools {
		n += p.Servers
	}
	return n
}

// querySelf runs a query whose one row is its own text.
func querySelf(ctx context.Context, conn *pgconn.PgConn, q string) error {
	res, err := conn.Exec(ctx, q).ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != q {
		return errors.New("unexpected result")
	}
	return nil
}

// relayModes are the ways a reply is relayed: in transaction mode, by the client's own
// goroutine (a simple query, or one inside a transaction block); in session mode, by a
// relay goroutine.
var relayModes = []struct {
	name string
	mode pool.Mode
	inTx bool
}{
	{"inline", pool.ModeTransaction, false},
	{"inline-in-transaction", pool.ModeTransaction, true},
	{"relay-goroutine", pool.ModeSession, false},
}

// checkFailedAlone runs query, which makes the server misbehave, on one client while
// another client holds (session mode) or shares (transaction mode) the pool, and checks
// that this client gets an error with one of codes and is closed, that its server is
// destroyed, and that the other client goes on working. arm, if not nil, is set around
// the query. With no codes, any error will do (the client may be closed without one).
func checkFailedAlone(t *testing.T, srv *pool.Server, url, query string, inTx bool, arm *atomic.Bool, codes ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := pgconn.Connect(ctx, url)
	require.NoError(t, err)
	defer other.Close(ctx)
	require.NoError(t, querySelf(ctx, other, "other"))
	conn, err := pgconn.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, querySelf(ctx, conn, "before"))
	if inTx {
		_, err = conn.Exec(ctx, "BEGIN").ReadAll()
		require.NoError(t, err)
		require.NoError(t, querySelf(ctx, conn, "in a transaction")) // BEGIN goes with it
	}
	before := serverCount(srv)
	require.Positive(t, before)
	if arm != nil {
		arm.Store(true)
	}
	_, err = conn.Exec(ctx, query).ReadAll()
	if arm != nil {
		arm.Store(false)
	}
	require.Error(t, err)
	if len(codes) > 0 {
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.Contains(t, codes, pe.Code, pe.Error())
		require.NotEmpty(t, pe.Message)
	}
	require.Error(t, querySelf(ctx, conn, "after"), "the client is closed")
	require.Eventually(t, func() bool { return serverCount(srv) == before-1 }, 5*time.Second, 10*time.Millisecond,
		"the server is destroyed")
	require.NoError(t, querySelf(ctx, other, "other"), "other clients keep working")
}

// TestMalformedServerReplies: a server that sends a malformed or unexpected message in
// the middle of a reply fails only its client, with 08P01, and is closed.
func TestMalformedServerReplies(t *testing.T) {
	for _, m := range relayModes {
		t.Run(m.name, func(t *testing.T) {
			srv, url := faultyProxy(t, m.mode)
			for name := range badReplies {
				t.Run(name, func(t *testing.T) {
					codes := []string{"08P01"}
					if name == "truncated" {
						codes = []string{"08006"} // the connection was lost mid-message
					}
					checkFailedAlone(t, srv, url, name, m.inTx, nil, codes...)
				})
			}
		})
	}
}

// TestRelayPanic: a panic while relaying a server's reply closes that client with
// XX000 and destroys its server; the process and the other clients live on.
func TestRelayPanic(t *testing.T) {
	for _, m := range relayModes {
		t.Run(m.name, func(t *testing.T) {
			srv, url := faultyProxy(t, m.mode)
			var armed atomic.Bool
			pool.SetRelayFault(srv, func(typ byte) {
				if typ == 'D' && armed.Load() {
					panic("injected relay fault")
				}
			})
			checkFailedAlone(t, srv, url, "boom", m.inTx, &armed, "XX000")
		})
	}
}

// panicLog is a slog handler that counts the records about a panic.
type panicLog struct{ n *atomic.Int64 }

func (h panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (h panicLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.Contains(r.Message, "panic") {
		h.n.Add(1)
	}
	return nil
}
func (h panicLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicLog) WithGroup(string) slog.Handler      { return h }

// FuzzRelay sends arbitrary bytes as a server's reply to a query, after a RowDescription,
// then closes the server connection. The relay must never panic, whatever it gets, and
// the proxy must go on serving.
func FuzzRelay(f *testing.F) {
	for _, b := range badReplies {
		f.Add(b)
	}
	f.Add(append(rawFrame('D', "\x00\x01\x00\x00\x00\x01x"), rawFrame('C', "SELECT 1\x00")...))
	f.Add(rawFrame('C', "SELECT 1\x00"))
	f.Add(rawFrame('E', "SERROR\x00C42000\x00Mx\x00\x00"))
	f.Add(rawFrame('A', "\x00\x00\x00\x01chan\x00payload\x00"))

	var payload atomic.Pointer[[]byte]
	addr := fakeServer(f, func(conn net.Conn) {
		defer conn.Close()
		be, ok := fakeLogin(conn)
		if !ok {
			return
		}
		row := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
		for {
			msg, err := be.Receive()
			if err != nil {
				return
			}
			q, ok := msg.(*pgproto3.Query)
			if !ok {
				return
			}
			be.Send(row)
			if q.String != "fuzz" {
				be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				if be.Flush() != nil {
					return
				}
				continue
			}
			if be.Flush() != nil {
				return
			}
			_, _ = conn.Write(*payload.Load())
			return
		}
	})
	var panics atomic.Int64
	srv, err := pool.New(pool.Config{AuthType: "trust", Primary: "postgres://bench@" + addr + "/bench?sslmode=disable",
		DefaultPoolSize: 4, Logger: slog.New(panicLog{&panics}), QueryTimeout: 2 * time.Second})
	require.NoError(f, err)
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(f, err)
	go func() { _ = srv.Serve(pln) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	cfg, err := pgconn.ParseConfig("postgres://bench@" + pln.Addr().String() + "/bench?sslmode=disable")
	require.NoError(f, err)
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		// The proxy forwards a row's header before its body: a bogus length must not make
		// this client allocate it.
		fe := pgproto3.NewFrontend(r, w)
		fe.SetMaxBodyLen(1 << 20)
		return fe
	}

	f.Fuzz(func(t *testing.T, reply []byte) {
		payload.Store(&reply)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		defer conn.Close(ctx)
		// Replies out of sequence can leave the client waiting for more.
		_ = conn.Conn().SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Exec(ctx, "fuzz").ReadAll()
		_ = conn.Close(ctx)
		require.Zero(t, panics.Load(), "the relay panicked")
		require.Eventually(t, func() bool {
			for _, p := range srv.Stat().Pools {
				if p.ActiveServers > 0 {
					return false
				}
			}
			return true
		}, 3*time.Second, 5*time.Millisecond, "a server is still lent to a closed client")
		// A server that closed its connection right after a complete reply went back to
		// the pool; the login that takes it fails, and the next one gets a new server.
		var lastErr error
		for range 3 {
			var healthy *pgconn.PgConn
			if healthy, lastErr = pgconn.ConnectConfig(ctx, cfg); lastErr == nil {
				_, lastErr = healthy.Exec(ctx, "select 1").ReadAll()
				_ = healthy.Close(ctx)
			}
			if lastErr == nil {
				break
			}
		}
		require.NoError(t, lastErr, "the proxy goes on serving")
	})
}

// TestClientSessionPanic: a panic on a client's goroutine while it holds a server (idle
// in session mode, or idle in a transaction) closes the client and destroys the server,
// which may be half updated, instead of returning it; other clients keep working.
func TestClientSessionPanic(t *testing.T) {
	for _, m := range []struct {
		name string
		mode pool.Mode
		inTx bool
	}{{"session", pool.ModeSession, false}, {"transaction-block", pool.ModeTransaction, true}} {
		t.Run(m.name, func(t *testing.T) {
			srv, url := faultyProxy(t, m.mode)
			var armed atomic.Bool
			pool.SetClientFault(srv, func(typ byte) {
				if typ == 'Q' && armed.Load() {
					panic("injected client fault")
				}
			})
			checkFailedAlone(t, srv, url, "boom", m.inTx, &armed)
		})
	}
}
