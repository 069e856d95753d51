//go:build linux

package fastio

import (
	"net"
	"os"
	"syscall"
)

// Keeping a socket without its net.Conn, for idle clients parked by descriptor alone
// (pool/parkconn.go): Dup before closing the connection, and FileConn to have one again.

// Dup returns a new descriptor (close-on-exec) of conn's socket, which stays open through
// it when conn is closed.
func Dup(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, syscall.ENOTSOCK
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, errno := -1, syscall.Errno(0)
	err = rc.Control(func(f uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		fd, errno = int(r), e
	})
	switch {
	case err != nil:
		return -1, err
	case errno != 0:
		return -1, os.NewSyscallError("fcntl", errno)
	}
	return fd, nil
}

// FileConn returns a net.Conn over the socket fd, and closes fd (the connection has a
// descriptor of its own), whether it succeeds or not.
func FileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	conn, err := net.FileConn(f)
	_ = f.Close()
	return conn, err
}
