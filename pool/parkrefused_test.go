package pool_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestParkRefusedIsNotAskedAgain: a client idle inside a held-back BEGIN (answered by
// cmpool, no server yet) cannot park, and is asked once, not at every sweep (on the event
// loops each ask is a wake onto a goroutine). Once its transaction has run and ended it
// is idle anew, and parks.
func TestParkRefusedIsNotAskedAgain(t *testing.T) {
	for _, loops := range []int{0, 1} {
		t.Run(map[int]string{0: "goroutines", 1: "event loops"}[loops], func(t *testing.T) {
			// Sweeps every 10 ms.
			srv, port := cannedProxy(t, pool.Config{DefaultPoolSize: 1, ParkIdleAfter: 20 * time.Millisecond, EventLoops: loops})
			scratch := make([]byte, 64<<10)
			roundTrip := func(fd int, req []byte) { require.NoError(t, rawRoundTrip(fd, req, scratch)) }
			fd := rawDial(t, port)
			roundTrip(fd, rawStartup(t, nil))
			require.Eventually(t, func() bool { return pool.DetachedClients(srv) == 1 }, 5*time.Second, 5*time.Millisecond, "an idle client parks")

			asks := pool.ParkAsks(srv)          // none while it is parked
			roundTrip(fd, rawQuery(t, "BEGIN")) // held back: cmpool answers it
			require.Eventually(t, func() bool { return pool.ParkAsks(srv) > asks }, 5*time.Second, 5*time.Millisecond,
				"the client in a held-back BEGIN is asked to park")
			first := pool.ParkAsks(srv)
			time.Sleep(300 * time.Millisecond) // about 30 sweeps
			// One more ask may have been on its way while the client refused the first.
			require.LessOrEqual(t, pool.ParkAsks(srv)-first, uint64(1), "asked again at the sweeps after it refused")
			require.Equal(t, 0, pool.DetachedClients(srv))

			roundTrip(fd, rawQuery(t, "SELECT 1"))
			roundTrip(fd, rawQuery(t, "COMMIT"))
			require.Eventually(t, func() bool { return pool.DetachedClients(srv) == 1 }, 5*time.Second, 5*time.Millisecond,
				"idle again after its transaction, the client parks")
			roundTrip(fd, rawQuery(t, "SELECT 1"))
		})
	}
}
