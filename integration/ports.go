package integration

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Ports for the servers a test starts: PostgreSQL nodes, cmpool binaries, metrics
// listeners.
//
// A port the kernel picked for a listener on port 0 is an ephemeral one, and once that
// listener is closed, any outgoing connection of the machine may take it as its local
// port before the server the test starts binds it (the suite makes thousands of
// connections, and other test packages run beside it): the server then fails with
// "address already in use". So FreePort hands out ports below the kernel's ephemeral
// range, which only an explicit bind takes, each port once per process, and checked free
// on every address first.

var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// portSpan is how many ports below the ephemeral range FreePort draws from.
const portSpan = 12000

// FreePort returns a TCP port that is free on every address and that this process has
// not handed out before.
func FreePort() (int, error) {
	low := ephemeralLow()
	if low-portSpan < 1024 {
		return kernelPort()
	}
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	start := rand.IntN(portSpan)
	for i := range portSpan {
		port := low - portSpan + (start+i)%portSpan
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		handedOut.ports[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("integration: no free port in %d..%d", low-portSpan, low-1)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 if it cannot be
// read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// kernelPort is a port the kernel picks, for a machine whose ephemeral range leaves no
// room below it.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, fmt.Errorf("integration: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
