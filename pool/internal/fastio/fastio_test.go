package fastio

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	b = <-accepted
	require.NotNil(t, b)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

func TestRawIO(t *testing.T) {
	a, b := tcpPair(t)
	ra, rb := New(a), New(b)
	require.IsType(t, &rawIO{}, ra)

	// Much more than the socket buffers hold: the writer waits for the reader.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := ra.Write(payload)
		if err == nil && n != len(payload) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	got := make([]byte, len(payload))
	_, err := io.ReadFull(rb, got)
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Equal(t, payload, got)

	// Deadlines of the connection still apply.
	require.NoError(t, b.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = rb.Read(make([]byte, 10))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout())
	require.NoError(t, b.SetReadDeadline(time.Time{}))

	// End of stream, then a closed connection.
	require.NoError(t, a.Close())
	n, err := rb.Read(make([]byte, 10))
	require.Zero(t, n)
	require.ErrorIs(t, err, io.EOF)
	_, err = ra.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)

	// The peer is gone: writing fails with a system-call error, not a panic or a hang.
	require.Eventually(t, func() bool {
		_, err := rb.Write([]byte("ping"))
		var se *os.SyscallError
		return errors.As(err, &se)
	}, 5*time.Second, 10*time.Millisecond)
}

func TestFastIOLeavesOtherConns(t *testing.T) {
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	require.Equal(t, io.ReadWriter(p), New(p))
}

// countingWatcher counts the reads that had to wait.
type countingWatcher struct{ blocks int }

func (w *countingWatcher) ReadStart()     {}
func (w *countingWatcher) ReadDone(bool)  {}
func (w *countingWatcher) WillBlock()     { w.blocks++ }
func (w *countingWatcher) reset() (n int) { n, w.blocks = w.blocks, 0; return n }

// TestFlushAwaitingReply: the flush is written, the caller's lock given back before the
// wait, and the call returns once the reply can be read, which the next read then takes
// without waiting; whatever ends a read ends the wait.
func TestFlushAwaitingReply(t *testing.T) {
	a, b := tcpPair(t)
	ra := New(a)
	watch := &countingWatcher{}
	require.True(t, Watch(ra, watch))
	w := bufio.NewWriter(ra)
	var mu sync.Mutex

	flush := func() chan error {
		mu.Lock()
		done := make(chan error, 1)
		go func() { done <- FlushAwaitingReply(w, ra, &mu) }()
		return done
	}
	_, _ = w.WriteString("request")
	done := flush()
	got := make([]byte, 7)
	_, err := io.ReadFull(b, got)
	require.NoError(t, err)
	require.Equal(t, "request", string(got))
	require.Eventually(t, func() bool {
		if mu.TryLock() {
			mu.Unlock()
			return true
		}
		return false
	}, 5*time.Second, time.Millisecond, "the lock is given back once flushed")
	select {
	case err := <-done:
		t.Fatalf("returned before the reply: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	_, err = b.Write([]byte("reply"))
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Equal(t, 1, watch.reset(), "it waited once")
	buf := make([]byte, 16)
	n, err := ra.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "reply", string(buf[:n]))
	require.Zero(t, watch.reset(), "the read after it found the reply at once")

	// Nothing buffered: nothing written, no wait.
	require.NoError(t, <-flush())

	// A read deadline already past: the request is still written, and the call returns
	// at once; the read after it meets the deadline.
	require.NoError(t, a.SetReadDeadline(time.Now().Add(-time.Second)))
	_, _ = w.WriteString("late")
	require.NoError(t, <-flush())
	_, err = io.ReadFull(b, got[:4])
	require.NoError(t, err)
	require.Equal(t, "late", string(got[:4]))
	_, err = ra.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, a.SetReadDeadline(time.Time{}))

	// The peer hangs up during the wait: the call returns, and the read sees the end.
	_, _ = w.WriteString("bye")
	done = flush()
	_, err = io.ReadFull(b, got[:3])
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, <-done)
	_, err = ra.Read(buf)
	require.ErrorIs(t, err, io.EOF)

	// Closed on this side: the flush fails, and the lock is given back all the same.
	require.NoError(t, a.Close())
	_, _ = w.WriteString("x")
	require.ErrorIs(t, <-flush(), net.ErrClosed)
	require.True(t, mu.TryLock())
	mu.Unlock()

	// Not the raw socket I/O: a plain flush.
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	pw := bufio.NewWriter(p)
	_, _ = pw.WriteString("piped")
	mu.Lock()
	go func() { _ = FlushAwaitingReply(pw, p, &mu) }()
	_, err = io.ReadFull(q, got[:5])
	require.NoError(t, err)
	require.Equal(t, "piped", string(got[:5]))
}
