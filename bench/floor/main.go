// Command floor measures what a relay written in Go costs per round trip on this machine: a
// plain TCP relay, one server connection per client, that parses nothing. Put in front of
// PostgreSQL beside PgBouncer and cmpool, it separates what the Go runtime's way of waiting
// for sockets costs from what a pooler's own work costs (docs/benchmarks/analysis.md).
//
//	go run ./bench/floor -mode goroutines -listen 127.0.0.1:6440 -target 127.0.0.1:5432
//
// Modes:
//
//   - goroutines: two goroutines per client, each copying one direction over net.Conn (the
//     runtime's poller parks and wakes them);
//   - loop: one goroutine on a locked thread, with an epoll set of its own over raw
//     non-blocking sockets, its system calls made through the runtime (syscall.Read,
//     syscall.Write, syscall.EpollWait: the runtime hands its processor off while they
//     block);
//   - raw: the same loop with raw system calls: the loop keeps its processor while it waits in
//     epoll_pwait, and yields it (runtime.Gosched) only when a wait ends with no event (a
//     signal, such as the runtime's preemption for a stop-the-world, or the wait's time
//     bound), so the rest of the program runs on the other processors.
//
// Linux only; IPv4.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	mode := flag.String("mode", "raw", "goroutines, loop or raw")
	listen := flag.String("listen", "127.0.0.1:6440", "address to listen on")
	target := flag.String("target", "127.0.0.1:5432", "address each client is relayed to")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp4", *listen)
	if err == nil {
		err = relay(ctx, *mode, ln, *target)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// relay relays every client accepted on ln to target, in mode, until ctx ends; it closes
// ln.
func relay(ctx context.Context, mode string, ln net.Listener, target string) error {
	switch mode {
	case "goroutines":
		return relayGoroutines(ctx, ln, target)
	case "loop", "raw":
		return relayLoop(ctx, ln, target, mode == "raw")
	}
	ln.Close()
	return fmt.Errorf("-mode: %q is none of goroutines, loop, raw", mode)
}

func relayGoroutines(ctx context.Context, ln net.Listener, target string) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			s, err := net.Dial("tcp4", target)
			if err != nil {
				c.Close()
				return
			}
			go func() {
				_, _ = io.Copy(s, c)
				s.Close()
			}()
			_, _ = io.Copy(c, s)
			c.Close()
		}()
	}
}
