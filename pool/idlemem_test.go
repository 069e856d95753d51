package pool_test

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

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
		name      string
		loops     int
		parkAfter time.Duration
		most      float64 // heap bytes per client
		detached  bool    // the clients give up their net.Conn
	}{
		// A parked client has given up its net.Conn (pool/parkconn.go): no netFD or
		// addresses, and no poll descriptor and finalizer record (about 520 bytes more,
		// outside the heap).
		{"parked", 0, 100 * time.Millisecond, 2 * 1024, true},
		// Suspended on the loops (parking off), a client keeps its connection, and its last
		// lease for the next transaction (about 600 bytes), since it waits there between
		// every two requests.
		{"event loops", 2, -1, 4 * 1024, false},
		// On the loops, a client idle for park_idle_after is parked as without them.
		{"event loops, parked", 2, 100 * time.Millisecond, 2 * 1024, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, port := cannedProxy(t, pool.Config{DefaultPoolSize: 2, ParkIdleAfter: tc.parkAfter,
				MaxClientConn: 3000, EventLoops: tc.loops})
			startup, query := rawStartup(t, map[string]string{"application_name": "idle-app"}), rawQuery(t, "select 1")
			scratch := make([]byte, 64<<10)
			open := func() {
				fd := rawDial(t, port)
				require.NoError(t, rawRoundTrip(fd, startup, scratch))
				require.NoError(t, rawRoundTrip(fd, query, scratch))
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
