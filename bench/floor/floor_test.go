package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// echoServer echoes every connection until it is closed, and reports each connection's
// end on ended.
func echoServer(t *testing.T) (addr string, ended chan struct{}) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ended = make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				c.Close()
				ended <- struct{}{}
			}()
		}
	}()
	return ln.Addr().String(), ended
}

func TestRelay(t *testing.T) {
	modes := []string{"goroutines"}
	if runtime.GOOS == "linux" {
		modes = append(modes, "loop", "raw")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			target, ended := echoServer(t)
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- relay(ctx, mode, ln, target) }()

			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			// A small message, then one far larger than the sockets' buffers, whose echo
			// the client starts to read only after a while: the relay's writes to the
			// client fill its socket, and the relay must stop reading the server until
			// they drain.
			big := make([]byte, 32<<20)
			_, _ = rand.Read(big)
			for _, msg := range [][]byte{[]byte("ping"), big} {
				errc := make(chan error, 1)
				go func() { _, err := c.Write(msg); errc <- err }()
				time.Sleep(200 * time.Millisecond)
				got := make([]byte, len(msg))
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.ReadFull(c, got); err != nil {
					t.Fatalf("reading the echo of %d bytes: %v", len(msg), err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("the echo of %d bytes differs", len(msg))
				}
			}
			c.Close()
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the server side was not closed after the client's")
			}

			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("relay did not return after its context ended")
			}
			if mode != "goroutines" && partialWrites == 0 {
				t.Fatal("no write was partial: the test did not fill a socket")
			}
			partialWrites = 0
		})
	}
}

func TestUnknownMode(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := relay(context.Background(), "threads", ln, "127.0.0.1:1"); err == nil {
		t.Fatal("an unknown mode was accepted")
	}
}
