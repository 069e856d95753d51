package pool_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// fakeBackend is the least of a PostgreSQL server for benchmarks: trust login, and one
// row for every simple query and every extended-protocol Execute.
func fakeBackend(tb testing.TB) string {
	return fakeServer(tb, serveFake)
}

// fakeServer listens on 127.0.0.1 and runs serve for each connection until the test ends.
func fakeServer(tb testing.TB, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(conn)
		}
	}()
	return ln.Addr().String()
}

// fakeLogin answers a client's startup as a trusting server does (refusing SSL), with the
// usual parameter statuses; ok is false when the client went away.
func fakeLogin(conn net.Conn) (be *pgproto3.Backend, ok bool) {
	be = pgproto3.NewBackend(conn, conn)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return nil, false
		}
		if _, ok := msg.(*pgproto3.SSLRequest); !ok {
			break
		}
		if _, err := conn.Write([]byte{'N'}); err != nil {
			return nil, false
		}
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{{"server_version", "15.0"}, {"client_encoding", "UTF8"}, {"TimeZone", "UTC"},
		{"DateStyle", "ISO, MDY"}, {"standard_conforming_strings", "on"}, {"integer_datetimes", "on"}} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return be, be.Flush() == nil
}

func serveFake(conn net.Conn) {
	defer conn.Close()
	be, ok := fakeLogin(conn)
	if !ok {
		return
	}
	row := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			if len(m.String) >= 6 && (m.String[:6] == "SELECT" || m.String[:6] == "select") {
				be.Send(row)
				be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			} else {
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SET")})
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse:
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			be.Send(&pgproto3.BindComplete{})
		case *pgproto3.Describe:
			be.Send(row)
		case *pgproto3.Execute:
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		case *pgproto3.Close:
			be.Send(&pgproto3.CloseComplete{})
		case *pgproto3.Sync:
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return
		}
		// Like PostgreSQL, reply at a Sync or a simple query, not per message.
		switch msg.(type) {
		case *pgproto3.Query, *pgproto3.Sync, *pgproto3.Flush:
			if err := be.Flush(); err != nil {
				return
			}
		}
	}
}

// benchProxy serves cmpool in front of a fake backend and returns a client connection.
func benchProxy(b *testing.B) *pgconn.PgConn {
	_, addr := serveProxy(b, pool.Config{Primary: "postgres://bench@" + fakeBackend(b) + "/bench?sslmode=disable", DefaultPoolSize: 2,
		AuthType: pool.AuthTrust}) // on loopback, measuring the relay
	conn, err := pgconn.Connect(context.Background(), "postgres://bench@"+addr.String()+"/bench?sslmode=disable")
	require.NoError(b, err)
	b.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// BenchmarkSimpleQueryThroughProxy is one transaction-mode simple query, end to end:
// client, proxy (checkout, relay, return) and a fake backend, all in this process.
func BenchmarkSimpleQueryThroughProxy(b *testing.B) {
	conn := benchProxy(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPreparedThroughProxy binds and executes a named statement each time, through
// the prepared-statement mapping.
func BenchmarkPreparedThroughProxy(b *testing.B) {
	conn := benchProxy(b)
	ctx := context.Background()
	_, err := conn.Prepare(ctx, "s1", "select $1::int", nil)
	require.NoError(b, err)
	args := [][]byte{[]byte("1")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := conn.ExecPrepared(ctx, "s1", args, nil, nil).Read(); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// cannedBackend is a fake server that answers from prepared bytes and reads into one
// buffer, so that it allocates nothing per query: a benchmark's allocs/op are then the
// proxy's own (and the raw client's, which allocates nothing either). Every simple query
// gets one row; Parse, Bind, Describe (of a portal or statement), Execute and Close get
// their usual replies, and Sync and simple queries end with ReadyForQuery. A simple query
// starting with BEGIN opens a transaction block (ReadyForQuery 'T' until a simple query
// starting with END or COMMIT), so that transactions can be relayed too.
func cannedBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = ln.Close() })
	enc := func(msgs ...pgproto3.BackendMessage) []byte {
		var buf []byte
		for _, m := range msgs {
			buf, err = m.Encode(buf)
			require.NoError(tb, err)
		}
		return buf
	}
	rowDesc := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}}
	row := &pgproto3.DataRow{Values: [][]byte{[]byte("0")}}
	done := &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}
	ready := &pgproto3.ReadyForQuery{TxStatus: 'I'}
	inTx := &pgproto3.ReadyForQuery{TxStatus: 'T'}
	replies := map[byte][]byte{
		'Q': enc(rowDesc, row, done, ready),
		'b': enc(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}, inTx),   // BEGIN
		't': enc(rowDesc, row, done, inTx),                                       // a query in a transaction
		'e': enc(&pgproto3.CommandComplete{CommandTag: []byte("COMMIT")}, ready), // END or COMMIT
		'P': enc(&pgproto3.ParseComplete{}),
		'B': enc(&pgproto3.BindComplete{}),
		'E': enc(row, done),
		'C': enc(&pgproto3.CloseComplete{}),
		'S': enc(ready),
	}
	describePortal := enc(rowDesc)
	describeStmt := enc(&pgproto3.ParameterDescription{ParameterOIDs: []uint32{23}}, rowDesc)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveCanned(conn, replies, describePortal, describeStmt)
		}
	}()
	return ln.Addr().String()
}

func serveCanned(conn net.Conn, replies map[byte][]byte, describePortal, describeStmt []byte) {
	defer conn.Close()
	if _, ok := fakeLogin(conn); !ok {
		return
	}
	r := bufio.NewReaderSize(conn, 8<<10)
	w := bufio.NewWriterSize(conn, 8<<10)
	body := make([]byte, 0, 8<<10)
	var header [5]byte
	inTx := false
	for {
		if _, err := io.ReadFull(r, header[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(header[1:])) - 4
		if n > cap(body) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch typ := header[0]; typ {
		case 'X':
			return
		case 'Q':
			switch {
			case bytes.HasPrefix(body, []byte("BEGIN")):
				inTx = true
				_, _ = w.Write(replies['b'])
			case bytes.HasPrefix(body, []byte("END")), bytes.HasPrefix(body, []byte("COMMIT")):
				inTx = false
				_, _ = w.Write(replies['e'])
			case inTx:
				_, _ = w.Write(replies['t'])
			default:
				_, _ = w.Write(replies['Q'])
			}
		case 'D':
			if len(body) > 0 && body[0] == 'S' {
				_, _ = w.Write(describeStmt)
			} else {
				_, _ = w.Write(describePortal)
			}
		default:
			_, _ = w.Write(replies[typ])
		}
		switch header[0] {
		case 'Q', 'S', 'H':
			if w.Flush() != nil {
				return
			}
		}
	}
}

// rawClient speaks the protocol from prepared bytes and reads replies into one buffer.
type rawClient struct {
	conn   net.Conn
	r      *bufio.Reader
	header [5]byte
}

// dialRaw logs in to the proxy at addr as user bench to database bench.
func dialRaw(tb testing.TB, addr string) *rawClient {
	conn, err := net.Dial("tcp", addr)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = conn.Close() })
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "bench", "database": "bench"}}).Encode(nil)
	require.NoError(tb, err)
	_, err = conn.Write(startup)
	require.NoError(tb, err)
	c := &rawClient{conn: conn, r: bufio.NewReaderSize(conn, 8<<10)}
	require.NoError(tb, c.roundTrip(nil))
	return c
}

// roundTrip writes req and reads the replies up to ReadyForQuery.
func (c *rawClient) roundTrip(req []byte) error {
	if len(req) > 0 {
		if _, err := c.conn.Write(req); err != nil {
			return err
		}
	}
	for {
		if _, err := io.ReadFull(c.r, c.header[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(c.header[1:])) - 4
		if c.header[0] == 'E' {
			return errors.New("ErrorResponse from the proxy")
		}
		if _, err := c.r.Discard(n); err != nil {
			return err
		}
		if c.header[0] == 'Z' {
			return nil
		}
	}
}

// relayProxy serves cmpool in front of a canned backend and returns its address.
func relayProxy(b testing.TB) string {
	srv, err := pool.New(pool.Config{Primary: "postgres://bench@" + cannedBackend(b) + "/bench?sslmode=disable",
		DefaultPoolSize: 2, AuthType: pool.AuthTrust, // on loopback, measuring the relay
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, pool.ErrServerClosed) {
			b.Error(err)
		}
	})
	return ln.Addr().String()
}

// encodeFrontend encodes client messages into one request.
func encodeFrontend(tb testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	var buf []byte
	for _, m := range msgs {
		var err error
		buf, err = m.Encode(buf)
		require.NoError(tb, err)
	}
	return buf
}

// BenchmarkRelay is one transaction through the proxy's relay (checkout, forward both
// ways, return) with a client and a server that allocate nothing, so allocs/op are the
// proxy's. The target is 0 allocs/op in steady state. The requests are those of pgbench -S
// in each query mode.
func BenchmarkRelay(b *testing.B) {
	const sel = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
	aid := [][]byte{[]byte("4711")}
	for _, bc := range []struct {
		name    string
		prepare []pgproto3.FrontendMessage // sent once before the timer starts
		req     []pgproto3.FrontendMessage
	}{
		{name: "simple", req: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"}}},
		{name: "extended", req: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: sel, ParameterOIDs: []uint32{23}},
			&pgproto3.Bind{Parameters: aid},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
			&pgproto3.Sync{}}},
		{name: "prepared", prepare: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "P_0", Query: sel, ParameterOIDs: []uint32{23}},
			&pgproto3.Sync{}},
			req: []pgproto3.FrontendMessage{
				&pgproto3.Bind{PreparedStatement: "P_0", Parameters: aid},
				&pgproto3.Execute{},
				&pgproto3.Sync{}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchmarkRelay(b, bc.prepare, bc.req)
		})
	}
}

// BenchmarkRelayTransaction is a transaction block of three statements, each its own
// round trip, as pgbench's TPC-B sends them: BEGIN, a query, END.
func BenchmarkRelayTransaction(b *testing.B) {
	c := dialRaw(b, relayProxy(b))
	reqs := [][]byte{
		encodeFrontend(b, &pgproto3.Query{String: "BEGIN;"}),
		encodeFrontend(b, &pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"}),
		encodeFrontend(b, &pgproto3.Query{String: "END;"}),
	}
	tx := func() error {
		for _, req := range reqs {
			if err := c.roundTrip(req); err != nil {
				return err
			}
		}
		return nil
	}
	for range 100 {
		require.NoError(b, tx())
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := tx(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkRelay(b *testing.B, prepare, reqMsgs []pgproto3.FrontendMessage) {
	c := dialRaw(b, relayProxy(b))
	if prepare != nil {
		require.NoError(b, c.roundTrip(encodeFrontend(b, prepare...)))
	}
	req := encodeFrontend(b, reqMsgs...)
	for range 100 { // warm the proxy's buffers and caches
		require.NoError(b, c.roundTrip(req))
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.roundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}
