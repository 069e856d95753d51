package notify

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSubscriberOrder: notifications reach the client in the order they came.
func TestSubscriberOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	s := NewSubscriber(func(msg []byte) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(msg))
		if len(got) == 100 {
			close(done)
		}
		return nil
	}, func() { t.Error("no overflow expected") })
	var want []string
	for i := range 100 {
		m := string(rune('a' + i%26))
		want = append(want, m)
		s.enqueue([]byte(m))
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("notifications not written")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, got)
}

// TestSubscriberOverflow: a client that does not read is disconnected once MaxQueued
// notifications wait, and nothing more is queued for it.
func TestSubscriberOverflow(t *testing.T) {
	block := make(chan struct{})
	overflows := 0
	s := NewSubscriber(func([]byte) error { <-block; return nil }, func() { overflows++ })
	for range MaxQueued + 10 {
		s.enqueue([]byte("x"))
	}
	require.Equal(t, 1, overflows)
	s.mu.Lock()
	require.True(t, s.closed)
	require.Empty(t, s.queue)
	s.mu.Unlock()
	close(block)
}

// TestSubscriberWriteError: once a write fails, the rest is dropped.
func TestSubscriberWriteError(t *testing.T) {
	var mu sync.Mutex
	writes := 0
	s := NewSubscriber(func([]byte) error {
		mu.Lock()
		defer mu.Unlock()
		writes++
		return errors.New("client gone")
	}, func() {})
	for range 5 {
		s.enqueue([]byte("x"))
	}
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closed && !s.running
	}, 5*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, writes)
}

func TestQuoteIdent(t *testing.T) {
	require.Equal(t, `"jobs"`, quoteIdent("jobs"))
	require.Equal(t, `"a""b"`, quoteIdent(`a"b`))
}
