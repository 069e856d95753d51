package backend_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// TestClaimWhileAGoroutineWaits: one server, shared by a session waiting for it as a
// goroutine (Acquire) and one waiting as a claim, in turn, many times. A server given back
// while the goroutine waits is promised to it (puddle hands the goroutine its turn, and
// TryAcquire fails though the server is idle): File must then queue the claim, not send
// the session to wait as a goroutine too. Every File of the full pool is filed or served.
func TestClaimWhileAGoroutineWaits(t *testing.T) {
	s := pgmock.NewServer(t, pgmock.Options{})
	p := newPool(t, s, backend.PoolConfig{Size: 1, Claims: true})
	ctx := context.Background()
	res, err := p.Acquire(ctx) // the one server, made up front
	require.NoError(t, err)
	p.Release(res)

	const rounds = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the goroutine waiter
		defer wg.Done()
		for range rounds {
			res, err := p.Acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(10 * time.Microsecond)
			p.Release(res)
		}
	}()
	ready := make(chan struct{}, 1)
	cl := &backend.Claim{Ready: func() { ready <- struct{}{} }}
	neither := 0
	for range rounds {
		res, filed, err := p.File(ctx, cl)
		require.NoError(t, err)
		switch {
		case filed:
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatal("a filed claim was never served")
			}
			require.NotNil(t, cl.Res, "retry %v, err %v", cl.Retry, cl.Err)
			res = cl.Res
		case res == nil:
			neither++ // would wait as a goroutine: take a turn as one
			if res, err = p.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		p.Release(res)
	}
	wg.Wait()
	require.Zero(t, neither, "claims on the full pool sent to wait as goroutines")
}
