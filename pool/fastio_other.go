//go:build !linux

package pool

import (
	"io"
	"net"
)

// FastIO returns conn: the raw system-call path is Linux only.
func FastIO(conn net.Conn) io.ReadWriter { return conn }
