//go:build !linux

package pool

import (
	"errors"
	"syscall"
)

// reusePortControl refuses so_reuseport where cmpool does not support it.
func reusePortControl(network, address string, c syscall.RawConn) error {
	return errors.New("pool: so_reuseport is supported on Linux only")
}
