//go:build !linux

package pool

import (
	"errors"
	"syscall"
)

// reusePortControl refuses reuse_port where cmpool does not support it.
func reusePortControl(network, address string, c syscall.RawConn) error {
	return errors.New("pool: reuse_port is supported on Linux only")
}
