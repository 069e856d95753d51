//go:build !linux

package fastio

import (
	"io"
	"net"
)

// New returns conn: the raw system-call path is Linux only.
func New(conn net.Conn) io.ReadWriter { return conn }
