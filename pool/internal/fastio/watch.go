package fastio

import (
	"errors"
	"net"
	"syscall"
)

// ErrWouldBlock is what a read that must not wait returns when the socket has nothing.
var ErrWouldBlock = errors.New("fastio: read would block")

// Watcher is told about the reads and waits of a socket's raw I/O (see Watch), for the
// event loops of pool/internal/reactor: which reads found the socket empty, and when a
// read or write is about to wait for the runtime's poller, which a loop must not do.
type Watcher interface {
	// ReadStart is called before each read system call.
	ReadStart()
	// ReadDone is called after it: drained tells that it found the socket empty (it
	// returned less than it could take, failed, or would have blocked).
	ReadDone(drained bool)
	// WillBlock is called before a read or write waits for the socket.
	WillBlock()
}

// ReleasingBuffer is a read buffer held only while it holds data (the client's reader):
// ReadRelease takes it for each read attempt and, when the socket has nothing and the
// buffer holds no data, gives it back for the wait.
type ReleasingBuffer interface {
	// Free takes the buffer if it is not held and returns its free space, after the
	// buffered bytes.
	Free() []byte
	// ReleaseIfEmpty gives the buffer back when it holds no data.
	ReleaseIfEmpty()
}

// FD returns the descriptor of a TCP or Unix socket, or -1.
func FD(conn net.Conn) int {
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return -1
	}
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}
