//go:build !linux

package main

import (
	"context"
	"errors"
	"net"
)

func relayLoop(ctx context.Context, ln net.Listener, target string, raw bool) error {
	ln.Close()
	return errors.New("the loop modes need Linux")
}
