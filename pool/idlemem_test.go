package pool_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestIdleClientMemory: clients that have logged in (with an application_name, as most
// drivers send) and run a query, and are now idle, hold only their session in cmpool: no
// read or write buffer, no goroutine, no lease kept for reuse, and the settings map they
// share with the clients that sent the same parameters. With both 8 KiB buffers held the
// heap grew by about 19 KiB per client; with the buffers released, by about 3 KiB; by about
// 2.5 KB once parked with its net.Conn, and 2.0 KB without it (and about 500 bytes less
// outside the heap). The clients are raw sockets, so that the heap measured is cmpool's
// alone.
func TestIdleClientMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		loops    int
		most     float64 // heap bytes per client
		detached bool    // the clients give up their net.Conn
	}{
		// A parked client has given up its net.Conn (pool/parkconn.go): no netFD or
		// addresses, and no poll descriptor and finalizer record (about 520 bytes more,
		// outside the heap).
		{"parked", 0, 2.5 * 1024, true},
		// On the loops a client keeps its connection, and its last lease for the next
		// transaction (about 600 bytes), since it waits there between every two requests.
		{"event loops", 2, 4 * 1024, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := pool.New(pool.Config{Primary: "postgres://bench@" + cannedBackend(t) + "/bench?sslmode=disable",
				DefaultPoolSize: 2, AuthType: pool.AuthTrust, ParkIdleAfter: 100 * time.Millisecond, MaxClientConn: 3000,
				EventLoops: tc.loops, Logger: slog.New(slog.DiscardHandler)})
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
				Parameters: map[string]string{"user": "bench", "database": "bench", "application_name": "idle-app"}}).Encode(nil)
			require.NoError(t, err)
			query, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
			require.NoError(t, err)
			scratch := make([]byte, 64<<10)
			// untilReady reads fd's messages up to ReadyForQuery, which the canned server
			// sends last, alone at the end of a reply.
			untilReady := func(fd int) {
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
			open := func() {
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
				require.NoError(t, err)
				t.Cleanup(func() { _ = syscall.Close(fd) })
				require.NoError(t, syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}))
				for _, req := range [][]byte{startup, query} {
					_, err = syscall.Write(fd, req)
					require.NoError(t, err)
					untilReady(fd)
				}
			}
			other := []metrics.Sample{{Name: "/memory/classes/other:bytes"}}
			heap := func() (uint64, uint64, int) {
				time.Sleep(time.Second) // parked, or suspended on a loop; the writers flushed
				runtime.GC()
				runtime.GC() // free buffers leave their pools after two collections
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				metrics.Read(other)
				return ms.HeapAlloc, other[0].Value.Uint64(), runtime.NumGoroutine()
			}
			open() // the server connection and the first client's one-time allocations
			before, other0, g0 := heap()
			const n = 2000
			for range n {
				open()
			}
			after, other1, g1 := heap()
			perClient := float64(int64(after)-int64(before)) / n
			otherPerClient := float64(int64(other1)-int64(other0)) / n
			t.Logf("heap per idle client: %.0f bytes, outside the heap %.0f; goroutines %d, then %d", perClient, otherPerClient, g0, g1)
			require.Less(t, g1-g0, n/10, "idle clients keep their goroutines")
			require.Less(t, perClient, tc.most, "an idle client holds more than its session (a buffer, a lease?)")
			if tc.detached {
				require.Equal(t, n+1, pool.DetachedClients(srv), "parked clients that kept their net.Conn")
			}
		})
	}
}
