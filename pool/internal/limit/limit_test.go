package limit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/limit"
)

// idlePool is an Evictor with a number of idle connections; closing one gives its slot
// back to the limit.
type idlePool struct {
	l    *limit.Limit
	idle atomic.Int32
}

func (p *idlePool) EvictIdle() bool {
	for {
		n := p.idle.Load()
		if n == 0 {
			return false
		}
		if p.idle.CompareAndSwap(n, n-1) {
			p.l.Release()
			return true
		}
	}
}

func TestLimitBoundsAndHandsOver(t *testing.T) {
	l := limit.New(2)
	require.True(t, l.TryAcquire())
	require.NoError(t, l.Acquire(t.Context(), nil))
	require.False(t, l.TryAcquire())
	require.Equal(t, 2, l.Used())

	got := make(chan error, 1)
	go func() { got <- l.Acquire(t.Context(), nil) }()
	require.Eventually(t, func() bool { return l.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	require.False(t, l.TryAcquire(), "a waiter comes first")
	l.Release()
	require.NoError(t, <-got)
	require.Equal(t, 2, l.Used(), "the slot went to the waiter")
	l.Release()
	l.Release()
	require.Equal(t, 0, l.Used())
}

func TestLimitWaitEnds(t *testing.T) {
	l := limit.New(1)
	require.True(t, l.TryAcquire())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.Acquire(ctx, nil), context.DeadlineExceeded)
	require.Equal(t, 0, l.Waiting())
	l.Release()
	require.Equal(t, 0, l.Used())
}

func TestLimitEvictsIdleOfOtherPools(t *testing.T) {
	l := limit.New(3)
	a, b := &idlePool{l: l}, &idlePool{l: l}
	l.Join(a)
	l.Join(b)
	for range 3 {
		require.True(t, l.TryAcquire())
	}
	b.idle.Store(2) // two of the three are idle in b
	require.NoError(t, l.Acquire(t.Context(), a))
	require.Equal(t, int32(1), b.idle.Load(), "one idle connection of b was closed")
	require.Equal(t, 3, l.Used())

	// Nothing idle anywhere: the waiter waits for a release.
	b.idle.Store(0)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.Acquire(ctx, a), context.DeadlineExceeded)
	// A connection that turns idle later is closed for the waiter.
	done := make(chan error, 1)
	go func() { done <- l.Acquire(t.Context(), a) }()
	time.Sleep(50 * time.Millisecond)
	b.idle.Store(1)
	require.NoError(t, <-done)
	l.Leave(b)
}

func TestLimitNeverExceeded(t *testing.T) {
	l := limit.New(4)
	var in, peak atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 50 {
				require.NoError(t, l.Acquire(t.Context(), nil))
				n := in.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				in.Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int32(4))
	require.Equal(t, 0, l.Used())
}

func TestRegistry(t *testing.T) {
	var r limit.Registry
	require.Nil(t, r.Get(limit.Key{Kind: "database", Name: "a"}))
	x := r.Get(limit.Key{Kind: "database", Name: "a", Max: 3})
	require.Same(t, x, r.Get(limit.Key{Kind: "database", Name: "a", Max: 3}))
	require.NotSame(t, x, r.Get(limit.Key{Kind: "user", Name: "a", Max: 3}))
	require.NotSame(t, x, r.Get(limit.Key{Kind: "database", Name: "a", Max: 4}))
	require.Equal(t, 3, x.Max())
}

// BenchmarkLimit measures taking and giving back a slot, as each server login and close
// does, uncontended and with goroutines competing for fewer slots than they are.
func BenchmarkLimit(b *testing.B) {
	b.Run("free", func(b *testing.B) {
		l := limit.New(1 << 20)
		for b.Loop() {
			_ = l.Acquire(context.Background(), nil)
			l.Release()
		}
	})
	b.Run("contended", func(b *testing.B) {
		l := limit.New(4)
		b.SetParallelism(4) // 4×GOMAXPROCS goroutines for 4 slots
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = l.Acquire(context.Background(), nil)
				l.Release()
			}
		})
	})
}
