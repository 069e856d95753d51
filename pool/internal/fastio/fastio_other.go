//go:build !linux

package fastio

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
)

// New returns conn: the raw system-call path is Linux only.
func New(conn net.Conn) io.ReadWriter { return conn }

// FlushAwaitingReply flushes w and unlocks held: the wait is Linux only.
func FlushAwaitingReply(w *bufio.Writer, rw io.ReadWriter, held *sync.Mutex) error {
	err := w.Flush()
	held.Unlock()
	return err
}

// Watch does nothing here and reports false.
func Watch(rw io.ReadWriter, w Watcher) bool { return false }

// Dup is not supported here (parking is Linux only).
func Dup(conn net.Conn) (int, error) { return -1, errors.ErrUnsupported }

// FileConn is not supported here.
func FileConn(fd int) (net.Conn, error) { return nil, errors.ErrUnsupported }
