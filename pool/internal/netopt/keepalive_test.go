//go:build linux

package netopt_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/netopt"
)

func sockopt(t *testing.T, conn net.Conn, level, opt int) int {
	t.Helper()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }))
	require.NoError(t, gerr)
	return v
}

// pair returns both ends of a loopback TCP connection, dialled with dial (net.Dial when
// nil).
func pair(t *testing.T, dial func(addr string) (net.Conn, error)) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	client, err = dial(ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

func TestApplyOnAcceptedSocket(t *testing.T) {
	_, server := pair(t, nil)
	k := netopt.Keepalive{Idle: 7 * time.Second, Interval: 3 * time.Second, Count: 4, UserTimeout: 2500 * time.Millisecond}
	require.NoError(t, k.Apply(server))
	require.Equal(t, 1, sockopt(t, server, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE))
	require.Equal(t, 7, sockopt(t, server, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE))
	require.Equal(t, 3, sockopt(t, server, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL))
	require.Equal(t, 4, sockopt(t, server, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT))
	require.Equal(t, 2500, sockopt(t, server, syscall.IPPROTO_TCP, 0x12))
}

func TestApplyOff(t *testing.T) {
	_, server := pair(t, nil)
	require.NoError(t, netopt.Keepalive{}.Apply(server))
	require.Equal(t, 1, sockopt(t, server, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE), "on by default")
	require.NoError(t, netopt.Keepalive{Off: true}.Apply(server))
	require.Equal(t, 0, sockopt(t, server, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE))
}

func TestDialer(t *testing.T) {
	k := netopt.Keepalive{Idle: 11 * time.Second, Interval: 5 * time.Second, Count: 6, UserTimeout: time.Second}
	dial := k.Dialer(time.Second)
	client, _ := pair(t, func(addr string) (net.Conn, error) { return dial(t.Context(), "tcp", addr) })
	require.Equal(t, 1, sockopt(t, client, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE))
	require.Equal(t, 11, sockopt(t, client, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE))
	require.Equal(t, 5, sockopt(t, client, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL))
	require.Equal(t, 6, sockopt(t, client, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT))
	require.Equal(t, 1000, sockopt(t, client, syscall.IPPROTO_TCP, 0x12))

	off := netopt.Keepalive{Off: true}.Dialer(time.Second)
	client, _ = pair(t, func(addr string) (net.Conn, error) { return off(t.Context(), "tcp", addr) })
	require.Equal(t, 0, sockopt(t, client, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE))
}
