package pool

import (
	"context"
	"net"
)

// Listen opens a TCP listener on addr. With reusePort, the socket is bound with
// SO_REUSEPORT (PgBouncer's so_reuseport), so that several cmpool processes can listen on
// the same address and the kernel spreads new connections among them. reusePort is
// supported on Linux only.
func Listen(ctx context.Context, addr string, reusePort bool) (net.Listener, error) {
	var lc net.ListenConfig
	if reusePort {
		lc.Control = reusePortControl
	}
	return lc.Listen(ctx, "tcp", addr)
}
