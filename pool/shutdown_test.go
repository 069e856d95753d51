package pool_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestShutdownRefusesLateConnections: connections that arrive while Shutdown runs are
// either served to the end before it returns, or refused; none is served after it.
func TestShutdownRefusesLateConnections(t *testing.T) {
	addr := fakeBackend(t)
	for range 5 {
		srv, err := pool.New(pool.Config{AuthType: "trust", Primary: "postgres://bench@" + addr + "/bench?sslmode=disable",
			Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		var (
			mu     sync.Mutex
			closed []chan struct{} // closed once the server closed a connection
			wg     sync.WaitGroup
		)
		started := make(chan struct{}, 4)
		for range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					conn, err := srv.DialContext(context.Background(), "", "")
					if err != nil {
						require.ErrorIs(t, err, pool.ErrServerClosed)
						return
					}
					done := make(chan struct{})
					go func() {
						_, _ = io.Copy(io.Discard, conn)
						_ = conn.Close()
						close(done)
					}()
					mu.Lock()
					closed = append(closed, done)
					mu.Unlock()
					if i == 2 {
						started <- struct{}{}
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
		for range 4 {
			<-started
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, srv.Shutdown(ctx))
		cancel()
		require.Zero(t, srv.Stat().Clients, "a connection is served after Shutdown returned")
		wg.Wait()
		mu.Lock()
		// Every connection handed out was served and closed before Shutdown returned.
		for _, done := range closed {
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Fatal("a connection is still served after Shutdown returned")
			}
		}
		mu.Unlock()
	}
}

// silentServer accepts TCP connections and never answers, like a server that hangs
// before its login; it returns its address, and counts the connections it accepted and
// those the other end closed.
func silentServer(t *testing.T) (addr string, accepted, closed *atomic.Int64) {
	accepted, closed = new(atomic.Int64), new(atomic.Int64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
			accepted.Add(1)
			go func() {
				_, _ = io.Copy(io.Discard, conn)
				closed.Add(1)
			}()
		}
	}()
	return ln.Addr().String(), accepted, closed
}

// TestShutdownWhileServersLogIn: Shutdown returns when its context ends although server
// logins are still in progress, one for a client and one to keep min_pool_size; those
// logins are then given up.
func TestShutdownWhileServersLogIn(t *testing.T) {
	addr, accepted, closed := silentServer(t)
	srv, err := pool.New(pool.Config{AuthType: "trust", Primary: "postgres://bench@" + addr + "/bench?sslmode=disable",
		ServerConnectTimeout: time.Minute, MinPoolSize: 2, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	cfg, err := pgconn.ParseConfig("postgres://bench@127.0.0.1/bench?sslmode=disable") // not dialed
	require.NoError(t, err)
	cfg.DialFunc = srv.DialContext
	cfg.ConnectTimeout = 0
	login := make(chan error, 1)
	go func() {
		conn, err := pgconn.ConnectConfig(context.Background(), cfg)
		if err == nil {
			_ = conn.Close(context.Background())
		}
		login <- err
	}()
	// The client's login, then the pool's upkeep for min_pool_size.
	require.Eventually(t, func() bool { return accepted.Load() >= 2 }, 5*time.Second, 10*time.Millisecond,
		"server logins have begun")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = srv.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second, "Shutdown waited for the server logins")
	select {
	case err := <-login:
		require.Error(t, err, "the client's login fails")
	case <-time.After(5 * time.Second):
		t.Fatal("the client's login still waits")
	}
	// The logins are given up, not left to run for server_connect_timeout.
	require.Eventually(t, func() bool { return closed.Load() == accepted.Load() }, 5*time.Second, 10*time.Millisecond,
		"server connections still open after Shutdown: %d of %d", accepted.Load()-closed.Load(), accepted.Load())
}
