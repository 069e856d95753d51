//go:build !linux

package backend

import "net"

// peekSocket cannot peek here: Alive falls back to a read with a past deadline.
func peekSocket(net.Conn) (alive, ok bool) { return false, false }
