//go:build !linux

package pool

import (
	"io"
	"net"
)

// fastIO returns conn: the raw system-call path is Linux only.
func fastIO(conn net.Conn) io.ReadWriter { return conn }
