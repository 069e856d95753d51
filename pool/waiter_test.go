package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestWaiter: each way a wait ends, and what a waiter can be used for after it.
func TestWaiter(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	type key struct{}
	parent = context.WithValue(parent, key{}, "v")

	t.Run("waits that end open leave it open, with no deadline between them", func(t *testing.T) {
		w := newWaiter(parent)
		defer w.release()
		for range 3 {
			w.begin(time.Hour)
			d, ok := w.Deadline()
			require.True(t, ok)
			require.WithinDuration(t, time.Now().Add(time.Hour), d, time.Minute)
			require.True(t, w.end())
			_, ok = w.Deadline()
			require.False(t, ok)
		}
		require.NoError(t, w.Err())
		require.False(t, closed(w.Done()))
		require.Equal(t, "v", w.Value(key{}))
	})

	t.Run("the timeout closes it with DeadlineExceeded", func(t *testing.T) {
		w := newWaiter(parent)
		w.begin(20 * time.Millisecond)
		select {
		case <-w.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the timeout did not end the wait")
		}
		require.ErrorIs(t, w.Err(), context.DeadlineExceeded)
		require.False(t, w.end(), "a closed waiter is not used again")
		require.ErrorIs(t, w.Err(), context.DeadlineExceeded, "and stays closed for whoever holds it")
	})

	t.Run("a timer of an earlier wait that fires late closes nothing", func(t *testing.T) {
		w := newWaiter(parent)
		defer w.release()
		w.begin(time.Hour)
		require.True(t, w.end())
		w.begin(time.Hour)
		w.expire() // what the earlier wait's timer would do, had it run late
		require.False(t, closed(w.Done()))
		require.True(t, w.end())
		w.expire() // and between waits
		require.False(t, closed(w.Done()))
	})

	t.Run("a timer left armed by an earlier wait bounds the next by its own deadline", func(t *testing.T) {
		w := newWaiter(parent)
		const bound = 80 * time.Millisecond
		w.begin(bound)
		require.True(t, w.end()) // the timer stays armed for the first wait's deadline
		time.Sleep(bound / 2)
		start := time.Now()
		w.begin(bound)
		select {
		case <-w.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the second wait was not ended")
		}
		require.GreaterOrEqual(t, time.Since(start), bound, "ended at the first wait's deadline")
		require.ErrorIs(t, w.Err(), context.DeadlineExceeded)
		require.False(t, w.end())
	})

	t.Run("a shorter bound than the armed timer's is kept", func(t *testing.T) {
		w := newWaiter(parent)
		w.begin(time.Hour)
		require.True(t, w.end())
		w.begin(20 * time.Millisecond) // query_wait_timeout shortened by a reload
		select {
		case <-w.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the wait outlived its bound")
		}
		require.False(t, w.end())
	})

	t.Run("a kill ends the wait under way, and only that", func(t *testing.T) {
		w := newWaiter(parent)
		w.kill() // between waits: nothing to end
		require.False(t, closed(w.Done()))
		w.begin(0)
		w.kill()
		require.True(t, closed(w.Done()))
		require.ErrorIs(t, w.Err(), context.Canceled)
		require.False(t, w.end())
	})

	t.Run("the end of the parent closes it, waiting or not", func(t *testing.T) {
		p, cancel := context.WithCancel(context.Background())
		w := newWaiter(p)
		cancel()
		require.Eventually(t, func() bool { return closed(w.Done()) }, 5*time.Second, time.Millisecond)
		require.ErrorIs(t, w.Err(), context.Canceled)
		w.begin(time.Hour)
		require.False(t, w.end())
	})

	t.Run("a released waiter leaves nothing registered with the parent", func(t *testing.T) {
		p, cancel := context.WithCancel(context.Background())
		w := newWaiter(p)
		w.begin(time.Hour)
		require.True(t, w.end())
		w.release()
		cancel()
		time.Sleep(20 * time.Millisecond)
		require.False(t, closed(w.Done()), "released: the parent's end no longer reaches it")
	})

	t.Run("a context made from it ends with it", func(t *testing.T) {
		w := newWaiter(parent)
		w.begin(0)
		child, cancel := context.WithTimeout(w, time.Hour)
		defer cancel()
		w.kill()
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the child did not end")
		}
		require.True(t, errors.Is(child.Err(), context.Canceled))
		require.False(t, w.end())
	})
}

// TestWaiterReuseAllocatesNothing: a wait that ends open costs no allocation.
func TestWaiterReuseAllocatesNothing(t *testing.T) {
	w := newWaiter(context.Background())
	defer w.release()
	w.begin(time.Minute)
	w.end()
	allocs := testing.AllocsPerRun(100, func() {
		w.begin(time.Minute)
		_ = closed(w.Done()) // what a select on it reads
		w.end()
	})
	require.Zero(t, allocs)
}
