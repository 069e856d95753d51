//go:build !linux

package fastio

import (
	"errors"
	"io"
	"net"
)

// New returns conn: the raw system-call path is Linux only.
func New(conn net.Conn) io.ReadWriter { return conn }

// Watch does nothing here and reports false.
func Watch(rw io.ReadWriter, w Watcher) bool { return false }

// Dup is not supported here (parking is Linux only).
func Dup(conn net.Conn) (int, error) { return -1, errors.ErrUnsupported }

// FileConn is not supported here.
func FileConn(fd int) (net.Conn, error) { return nil, errors.ErrUnsupported }
