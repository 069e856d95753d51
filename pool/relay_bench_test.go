package pool_test

import (
	"context"
	"errors"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFake(conn)
		}
	}()
	return ln.Addr().String()
}

func serveFake(conn net.Conn) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.SSLRequest); ok {
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		}
		break
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{{"server_version", "15.0"}, {"client_encoding", "UTF8"}, {"TimeZone", "UTC"},
		{"DateStyle", "ISO, MDY"}, {"standard_conforming_strings", "on"}, {"integer_datetimes", "on"}} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
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
	addr := fakeBackend(b)
	srv, err := pool.New(pool.Config{Primary: "postgres://bench@" + addr + "/bench?sslmode=disable", DefaultPoolSize: 2,
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
	conn, err := pgconn.Connect(context.Background(), "postgres://bench@"+ln.Addr().String()+"/bench?sslmode=disable")
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
