package pool_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestParkAtLogin: once more than 256 logged-in clients hold a goroutine, a client that
// has just logged in is parked at once (pool/park.go, parkAtLogin), not after
// ParkIdleAfter (an hour here); those under the limit are not. Both kinds answer their
// next query: a parked one from a connection made again of its socket (pool/parkconn.go).
// On the event loops, where the first 256 wait on a loop with their net.Conn, the same.
func TestParkAtLogin(t *testing.T) {
	for _, loops := range []int{0, 2} {
		t.Run(map[int]string{0: "goroutines", 2: "event loops"}[loops], func(t *testing.T) {
			srv, port := cannedProxy(t, pool.Config{DefaultPoolSize: 2, ParkIdleAfter: time.Hour, MaxClientConn: 1000, EventLoops: loops})
			startup, query := rawStartup(t, nil), rawQuery(t, "select 1")
			scratch := make([]byte, 64<<10)
			untilReady := func(fd int, req []byte) { require.NoError(t, rawRoundTrip(fd, req, scratch)) }
			const n = 300
			fds := make([]int, n)
			for i := range fds {
				fds[i] = rawDial(t, port)
				untilReady(fds[i], startup)
			}
			// Client k (from 1) logs in with k-1 others before it, parked from the 257th on;
			// on the loops the others wait there, counted as parked too.
			onLoops := 0
			if loops > 0 {
				onLoops = 256
			}
			require.Eventually(t, func() bool {
				st := srv.Stat()
				return st.ParkedClients == n-256+onLoops && st.EventLoops.Idle == onLoops
			}, 10*time.Second, 10*time.Millisecond, "parked: %+v", srv.Stat())
			require.Equal(t, n-256, pool.DetachedClients(srv), "parked clients that kept their net.Conn")
			untilReady(fds[0], query)   // never parked
			untilReady(fds[n-1], query) // parked at login, resumed
			untilReady(fds[n-1], query)
			if loops > 0 {
				onLoops++ // the resumed client waits on a loop again
			}
			require.Eventually(t, func() bool { return srv.Stat().ParkedClients == n-256-1+onLoops }, 10*time.Second, 10*time.Millisecond,
				"the resumed client is parked again only after ParkIdleAfter: %+v", srv.Stat())
			require.Equal(t, n-256-1, pool.DetachedClients(srv))
			require.Equal(t, n, srv.Stat().Clients)
		})
	}
}
