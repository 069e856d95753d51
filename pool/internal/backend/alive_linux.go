package backend

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peekSocket looks at a socket's receive queue without reading from it or waiting:
// alive is true when nothing is queued and the peer has not closed or reset the
// connection. ok is false when the socket cannot be peeked (not a TCP or Unix socket);
// then the caller falls back. A TLS connection is peeked on its underlying socket: an
// idle server sends no record, so anything queued there means the same as in clear text.
func peekSocket(c net.Conn) (alive, ok bool) {
	if tc, isTLS := c.(*tls.Conn); isTLS {
		c = tc.NetConn()
	}
	sc, isSys := c.(syscall.Conn)
	if !isSys {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var buf [1]byte
	var perr error
	if err := rc.Control(func(fd uintptr) {
		for {
			_, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if !errors.Is(perr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return false, true // closed by us
	}
	switch {
	case errors.Is(perr, syscall.EAGAIN), errors.Is(perr, syscall.EWOULDBLOCK):
		return true, true // nothing queued, still open
	case perr != nil:
		return false, true // reset, or another socket error
	default:
		return false, true // n > 0: unexpected bytes; n == 0: end of stream
	}
}
