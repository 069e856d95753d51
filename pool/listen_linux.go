package pool

import "syscall"

// soReusePort is SO_REUSEPORT, which the syscall package does not name on Linux.
const soReusePort = 0xf

// reusePortControl sets SO_REUSEPORT on a socket before it is bound.
func reusePortControl(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	}); err != nil {
		return err
	}
	return serr
}
