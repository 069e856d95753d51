package fastio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
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
