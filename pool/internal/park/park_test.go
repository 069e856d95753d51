//go:build linux

package park

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type sleeper chan struct{}

func (s sleeper) Resume() { close(s) }

// pair returns the two ends of a loopback TCP connection and the accepted end's descriptor.
func pair(t *testing.T) (client net.Conn, server *net.TCPConn, fd int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	c, err := ln.Accept()
	require.NoError(t, err)
	server = c.(*net.TCPConn)
	t.Cleanup(func() { _ = server.Close() })
	rc, err := server.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(f uintptr) { fd = int(f) }))
	return client, server, fd
}

func resumed(s sleeper) bool {
	select {
	case <-s:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func idle(s sleeper) bool {
	select {
	case <-s:
		return false
	case <-time.After(100 * time.Millisecond):
		return true
	}
}

func TestParkResumesOnData(t *testing.T) {
	set, err := New()
	require.NoError(t, err)
	defer set.Close()
	client, server, fd := pair(t)
	s := make(sleeper)
	tok, err := set.Park(fd, s)
	require.NoError(t, err)
	require.True(t, idle(s), "resumed with nothing to read")
	require.Equal(t, 1, set.Len())
	_, err = client.Write([]byte("Q"))
	require.NoError(t, err)
	require.True(t, resumed(s))
	require.Equal(t, 0, set.Len())
	require.False(t, set.Wake(tok), "a token is good for one wake")
	// The socket still reads normally, and can be parked again.
	b := make([]byte, 1)
	_, err = server.Read(b)
	require.NoError(t, err)
	s2 := make(sleeper)
	_, err = set.Park(fd, s2)
	require.NoError(t, err)
	require.NoError(t, client.Close())
	require.True(t, resumed(s2), "a hang-up resumes")
}

func TestParkDataAlreadyThere(t *testing.T) {
	set, err := New()
	require.NoError(t, err)
	defer set.Close()
	client, _, fd := pair(t)
	_, err = client.Write([]byte("Q"))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	s := make(sleeper)
	_, err = set.Park(fd, s)
	require.NoError(t, err)
	require.True(t, resumed(s), "data sent before Park is reported")
}

func TestWakeAndClose(t *testing.T) {
	set, err := New()
	require.NoError(t, err)
	_, _, fd1 := pair(t)
	_, _, fd2 := pair(t)
	s1, s2 := make(sleeper), make(sleeper)
	t1, err := set.Park(fd1, s1)
	require.NoError(t, err)
	_, err = set.Park(fd2, s2)
	require.NoError(t, err)
	require.False(t, set.Wake(t1+1), "a stale token wakes nothing")
	require.True(t, set.Wake(t1))
	require.True(t, resumed(s1))
	require.True(t, idle(s2))
	set.Close()
	require.True(t, resumed(s2), "Close resumes the clients still parked")
	_, err = set.Park(fd1, make(sleeper))
	require.ErrorIs(t, err, ErrClosed)
	set.Close() // twice is fine
}

func TestParkBadDescriptor(t *testing.T) {
	set, err := New()
	require.NoError(t, err)
	defer set.Close()
	_, err = set.Park(-1, make(sleeper))
	require.ErrorIs(t, err, syscall.EBADF)
	require.Equal(t, 0, set.Len())
}
