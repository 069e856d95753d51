package pool_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestParkChurn: clients parked and resumed over and over (parked after 20 ms, and at
// login once more than 256 hold a goroutine), each time giving up their connection and
// making it again of their socket (pool/parkconn.go), while the console's view of them
// (Stat, which reads every client's addresses) is taken all the time, some hang up while
// parked, and a forced shutdown closes the rest, parked or not. Every query is answered;
// run with -race, it checks that nothing else touches a client's socket while it is
// detached or attached.
func TestParkChurn(t *testing.T) {
	srv, port := cannedProxy(t, pool.Config{DefaultPoolSize: 4, ParkIdleAfter: 20 * time.Millisecond, MaxClientConn: 1000})
	startup, query := rawStartup(t, nil), rawQuery(t, "select 1")
	const n, workers = 300, 6
	fds := make([]int, n)
	scratch := make([]byte, 64<<10)
	for i := range fds {
		fds[i] = rawDial(t, port)
		require.NoError(t, rawRoundTrip(fds[i], startup, scratch))
	}

	stop := make(chan struct{})
	var views sync.WaitGroup
	views.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := srv.Stat()
			if st.Clients > n {
				t.Errorf("clients: %d", st.Clients)
			}
		}
	})
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for time.Now().Before(deadline) {
				fd := fds[w+workers*rng.IntN(n/workers)]
				if err := rawRoundTrip(fd, query, buf); err != nil {
					errs <- fmt.Errorf("client %d: %w", fd, err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.Eventually(t, func() bool { return srv.Stat().ParkedClients == n }, 10*time.Second, 10*time.Millisecond,
		"parked: %d", srv.Stat().ParkedClients)
	require.Equal(t, n, pool.DetachedClients(srv))

	// A third hang up while parked; the proxy sees each go.
	for _, fd := range fds[:n/3] {
		require.NoError(t, syscall.Close(fd))
	}
	require.Eventually(t, func() bool { return srv.Stat().Clients == n-n/3 }, 10*time.Second, 10*time.Millisecond,
		"clients: %d", srv.Stat().Clients)

	// A forced shutdown closes the rest: some resumed just before, the others parked.
	for _, fd := range fds[n/3 : n/2] {
		_, err := syscall.Write(fd, query)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = srv.Shutdown(ctx)
	close(stop)
	views.Wait()
	require.Eventually(t, func() bool { return srv.Stat().Clients == 0 }, 10*time.Second, 10*time.Millisecond,
		"clients: %d", srv.Stat().Clients)
	for _, fd := range fds[n/2:] {
		got, err := syscall.Read(fd, scratch)
		for err == nil && got > 0 {
			got, err = syscall.Read(fd, scratch) // an ErrorResponse 57P01, then the end
		}
		require.NoError(t, err)
		require.Zero(t, got, "a parked client's socket is closed by the shutdown")
	}
}
