package backend

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"
)

// loginOnlyBackend accepts connections on 127.0.0.1, logs them in with trust and answers
// every Sync with ReadyForQuery: enough for server connections that are only checked out
// and returned.
func loginOnlyBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				be := pgproto3.NewBackend(conn, conn)
				for {
					msg, err := be.ReceiveStartupMessage()
					if err != nil {
						return
					}
					if _, ok := msg.(*pgproto3.SSLRequest); !ok {
						break
					}
					if _, err := conn.Write([]byte{'N'}); err != nil {
						return
					}
				}
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
				be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				if be.Flush() != nil {
					return
				}
				for {
					msg, err := be.Receive()
					if err != nil {
						return
					}
					if _, ok := msg.(*pgproto3.Sync); ok {
						be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
						if be.Flush() != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// benchBackendPool returns a pool of size server connections to a
// login-only backend, all of them connected.
func benchBackendPool(b *testing.B, size int) *Pool {
	cfg, err := pgconn.ParseConfig("postgres://bench@" + loginOnlyBackend(b) + "/bench?sslmode=disable")
	require.NoError(b, err)
	bp, err := NewPool(PoolConfig{Name: "primary", ConnConfig: cfg, Size: size, ConnectTimeout: 10 * time.Second})
	require.NoError(b, err)
	b.Cleanup(bp.Close)
	ctx := context.Background()
	for range size {
		require.NoError(b, bp.p.CreateResource(ctx))
	}
	return bp
}

// BenchmarkBackendPoolCheckout is a session's checkout and return of a server connection
// when one is idle: the step every transaction takes in transaction mode.
func BenchmarkBackendPoolCheckout(b *testing.B) {
	ctx := context.Background()
	b.Run("acquire", func(b *testing.B) {
		bp := benchBackendPool(b, 1)
		b.ReportAllocs()
		for b.Loop() {
			res, err := bp.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			bp.Release(res)
		}
	})
	b.Run("tryAcquire", func(b *testing.B) {
		bp := benchBackendPool(b, 1)
		b.ReportAllocs()
		for b.Loop() {
			res := bp.TryAcquire(ctx)
			if res == nil {
				b.Fatal("no idle server connection")
			}
			bp.Release(res)
		}
	})
	// 20 server connections shared by GOMAXPROCS×4 goroutines, as 200 clients share 20.
	b.Run("acquire parallel", func(b *testing.B) {
		bp := benchBackendPool(b, 20)
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := bp.Acquire(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				bp.Release(res)
			}
		})
	})
}
