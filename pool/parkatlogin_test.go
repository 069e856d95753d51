package pool_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestParkAtLogin: once more than 256 logged-in clients hold a goroutine, a client that
// has just logged in is parked at once (pool/park.go, parkAtLogin), not after
// ParkIdleAfter (an hour here); those under the limit are not. Both kinds answer their
// next query: a parked one from a connection made again of its socket (pool/parkconn.go).
func TestParkAtLogin(t *testing.T) {
	srv, err := pool.New(pool.Config{Primary: "postgres://bench@" + cannedBackend(t) + "/bench?sslmode=disable",
		DefaultPoolSize: 2, AuthType: pool.AuthTrust, ParkIdleAfter: time.Hour, MaxClientConn: 1000,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, pool.ErrServerClosed) {
			t.Error(err)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "bench", "database": "bench"}}).Encode(nil)
	require.NoError(t, err)
	query, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	require.NoError(t, err)
	scratch := make([]byte, 64<<10)
	// untilReady sends req on fd and reads the reply up to ReadyForQuery, which the canned
	// server and cmpool's login send last, alone at the end.
	untilReady := func(fd int, req []byte) {
		_, err := syscall.Write(fd, req)
		require.NoError(t, err)
		got := 0
		for {
			n, err := syscall.Read(fd, scratch[got:])
			require.NoError(t, err)
			require.Positive(t, n, "the proxy hung up")
			got += n
			require.NotEqual(t, byte('E'), scratch[0], "ErrorResponse: %q", scratch[:got])
			if got >= 6 && scratch[got-6] == 'Z' {
				return
			}
		}
	}
	const n = 300
	fds := make([]int, n)
	for i := range fds {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		t.Cleanup(func() { _ = syscall.Close(fd) })
		require.NoError(t, syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}))
		untilReady(fd, startup)
		fds[i] = fd
	}
	// Client k (from 1) logs in with k-1 others before it, parked from the 257th on.
	require.Eventually(t, func() bool { return srv.Stat().ParkedClients == n-256 }, 10*time.Second, 10*time.Millisecond,
		"parked: %d", srv.Stat().ParkedClients)
	require.Equal(t, n-256, pool.DetachedClients(srv), "parked clients that kept their net.Conn")
	untilReady(fds[0], query)   // never parked
	untilReady(fds[n-1], query) // parked at login, resumed
	untilReady(fds[n-1], query)
	require.Equal(t, n-256-1, srv.Stat().ParkedClients, "the resumed client is parked again only after ParkIdleAfter")
	require.Equal(t, n-256-1, pool.DetachedClients(srv))
	require.Equal(t, n, srv.Stat().Clients)
}
