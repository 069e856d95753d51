package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	idleDialers  = 64               // connections being opened at once
	idleSources  = 8                // loopback source addresses the idle connections come from
	maxIdle      = 55000            // the most -idle: the proxies take 60000 clients
	idleSettle   = 5 * time.Second  // wait before reading the RSS: the proxy is done with the logins, and cmpool has parked the idle clients
	idleDeadline = 60 * time.Second // bound on one connection's login
)

// idleResult is the RSS of one proxy with idle client connections held open.
type idleResult struct {
	Target    string
	Clients   int   // connections held open, logged in
	BaseRSS   int64 // bytes, before the connections were opened
	HeldRSS   int64 // bytes, with them open
	PerClient float64
	Err       error
}

// raiseFileLimit raises RLIMIT_NOFILE to want, or as far as the hard limit lets it when that
// cannot be raised, and returns the soft limit in force. The proxies started afterwards inherit
// it.
func raiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return want, nil
		}
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

// measureIdle opens n client connections to the proxy, each logged in to database db as user
// and then left idle, and reads the proxy's RSS before and with them open.
func measureIdle(ctx context.Context, p *proxyProcess, n int, user, db string) idleResult {
	res := idleResult{Target: p.name}
	base, err := p.rss()
	if err != nil {
		res.Err = err
		return res
	}
	res.BaseRSS = base
	conns, err := openIdle(ctx, p.addr, n, user, db)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	res.Clients = len(conns)
	if err != nil {
		res.Err = fmt.Errorf("%d of %d connections logged in: %w", len(conns), n, err)
		return res
	}
	select {
	case <-ctx.Done():
		res.Err = ctx.Err()
		return res
	case <-time.After(idleSettle):
	}
	if p.exited() {
		res.Err = fmt.Errorf("%s exited with %d idle clients: %v%s", p.name, n, p.waitErr, p.logTail())
		return res
	}
	held, err := p.rss()
	if err != nil {
		res.Err = err
		return res
	}
	res.HeldRSS = held
	res.PerClient = float64(held-base) / float64(len(conns))
	return res
}

// openIdle opens n connections to addr, sends each a StartupMessage for user and db and reads
// until ReadyForQuery, idleDialers at a time. It returns the connections that logged in, which
// the caller closes, and the first error.
func openIdle(ctx context.Context, addr string, n int, user, db string) ([]net.Conn, error) {
	startup, err := (&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": user, "database": db, "application_name": "bench-idle"},
	}).Encode(nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu    sync.Mutex
		conns = make([]net.Conn, 0, n)
		next  = 0
		wg    sync.WaitGroup
	)
	// One source address takes at most the ephemeral port range (about 28,000 ports): the
	// connections are spread over idleSources loopback addresses.
	dialers := make([]net.Dialer, idleSources)
	for i := range dialers {
		dialers[i].LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
	}
	for range min(idleDialers, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				if next == n || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				k := next
				next++
				mu.Unlock()
				c, err := login(ctx, &dialers[k%idleSources], addr, startup)
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return conns, context.Cause(ctx)
}

// login connects to addr, sends startup and reads the server's messages up to ReadyForQuery.
func login(ctx context.Context, d *net.Dialer, addr string, startup []byte) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(idleDeadline))
	if _, err := c.Write(startup); err != nil {
		c.Close()
		return nil, err
	}
	if err := readUntilReady(bufio.NewReaderSize(c, 512)); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// readUntilReady reads backend messages until ReadyForQuery. An ErrorResponse or an
// authentication request other than AuthenticationOk is an error.
func readUntilReady(r io.Reader) error {
	var header [5]byte
	for {
		if _, err := io.ReadFull(r, header[:]); err != nil {
			return fmt.Errorf("read login reply: %w", err)
		}
		n := int(binary.BigEndian.Uint32(header[1:])) - 4
		if n < 0 || n > 1<<20 {
			return fmt.Errorf("bad message length %d in login reply", n+4)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("read login reply: %w", err)
		}
		switch header[0] {
		case 'Z':
			return nil
		case 'E':
			return fmt.Errorf("login refused: %s", errorMessage(body))
		case 'R':
			if n < 4 || binary.BigEndian.Uint32(body) != 0 {
				return errors.New("login asks for a password; the benchmark expects trust")
			}
		}
	}
}

// errorMessage returns the M field of an ErrorResponse body.
func errorMessage(body []byte) string {
	for len(body) > 1 {
		typ := body[0]
		end := strings.IndexByte(string(body[1:]), 0)
		if end < 0 {
			break
		}
		if typ == 'M' {
			return string(body[1 : 1+end])
		}
		body = body[2+end:]
	}
	return "(no message)"
}

// rss returns the process's resident set size in bytes, from VmRSS in /proc/PID/status.
func (p *proxyProcess) rss() (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(data))
}

// parseVmRSS returns the VmRSS line of /proc/PID/status in bytes.
func parseVmRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed VmRSS line %q", strings.TrimSpace(line))
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line in /proc/PID/status")
}
