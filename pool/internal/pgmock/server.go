// Package pgmock is a scripted fake PostgreSQL server for protocol tests.
//
// A Server listens on 127.0.0.1:0 and logs every connection in without a password
// (AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery). What a connection
// does next is a Script: steps that expect frontend messages (exactly, by type or by a
// predicate) and send backend messages. Scripts are queued with Expect and taken in
// order, each by the first connection that sends something other than housekeeping, so
// connections a pooler opens only to log a client in, or to monitor a server, take none.
//
// Housekeeping is what a pooler sends on its own (session settings through set_config,
// DISCARD ALL, RESET ALL, pings, replica checks): such simple queries are answered
// generically at any point, in or out of a script, and recorded (Housekeeping).
// CancelRequests are recorded with their key (Cancels).
//
// A script failure (expected X, got Y; a connection closed early; a script never taken)
// fails the test through its testing.TB.
package pgmock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Key is a BackendKeyData: a backend's process id and secret key.
type Key struct {
	ProcessID uint32
	SecretKey []byte
}

// String renders k for failure messages.
func (k Key) String() string { return fmt.Sprintf("pid %d secret %x", k.ProcessID, k.SecretKey) }

// Step is one step of a script, run on the connection that took the script.
type Step func(*Conn) error

// Answer is how a housekeeping query is answered: text columns and rows (none for a
// command) and the command tag, then ReadyForQuery 'I'. The zero Answer is an empty
// query's.
type Answer struct {
	Columns []string
	Rows    [][]string
	Tag     string
}

// Options configure a Server. The zero value is the defaults.
type Options struct {
	// Params are the ParameterStatus messages sent at login, over DefaultParams. Nil
	// means DefaultParams only.
	Params map[string]string

	// Housekeeping decides whether a simple query is housekeeping and how it is answered.
	// Nil means DefaultHousekeeping.
	Housekeeping func(query string) (Answer, bool)
}

// DefaultParams are the ParameterStatus messages of a login.
var DefaultParams = map[string]string{
	"server_version":              "15.0",
	"server_encoding":             "UTF8",
	"client_encoding":             "UTF8",
	"DateStyle":                   "ISO, MDY",
	"TimeZone":                    "UTC",
	"integer_datetimes":           "on",
	"standard_conforming_strings": "on",
	"application_name":            "",
	"is_superuser":                "off",
	"session_authorization":       "app",
	"IntervalStyle":               "postgres",
}

// DefaultHousekeeping recognises the queries a pooler or a monitor sends on its own:
// pings, set_config, RESET ALL, DISCARD ALL, and the replica checks (pg_is_in_recovery,
// pg_current_wal_lsn), which it answers as an idle primary at WAL position 0/3000000.
func DefaultHousekeeping(q string) (Answer, bool) {
	t := strings.TrimSpace(q)
	l := strings.ToLower(t)
	switch {
	case t == "" || t == "-- ping" || t == ";":
		return Answer{}, true
	case strings.Contains(l, "pg_current_wal_lsn()") && strings.Contains(l, "pg_is_in_recovery()"):
		return Answer{Columns: []string{"pg_current_wal_lsn", "pg_is_in_recovery"}, Rows: [][]string{{"0/3000000", "f"}}, Tag: "SELECT 1"}, true
	case strings.Contains(l, "pg_is_in_recovery()") && strings.Contains(l, "pg_last_wal_replay_lsn()"):
		return Answer{Columns: []string{"pg_is_in_recovery", "replay", "receive", "age"}, Rows: [][]string{{"f", "", "", "-1"}}, Tag: "SELECT 1"}, true
	case strings.HasPrefix(l, "select set_config(") || strings.HasPrefix(l, "reset all"):
		return Answer{Tag: "SELECT 1"}, true
	case l == "discard all":
		return Answer{Tag: "DISCARD ALL"}, true
	}
	return Answer{}, false
}

// ReplicaHousekeeping is DefaultHousekeeping for a streaming replica: pg_is_in_recovery()
// is true and replay has caught up with 0/3000000.
func ReplicaHousekeeping(q string) (Answer, bool) {
	l := strings.ToLower(q)
	if strings.Contains(l, "pg_is_in_recovery()") && strings.Contains(l, "pg_last_wal_replay_lsn()") {
		return Answer{Columns: []string{"pg_is_in_recovery", "replay", "receive", "age"}, Rows: [][]string{{"t", "0/3000000", "0/3000000", "0"}}, Tag: "SELECT 1"}, true
	}
	return DefaultHousekeeping(q)
}

// Server is a scripted fake PostgreSQL server.
type Server struct {
	t    testing.TB
	ln   net.Listener
	opts Options
	wg   sync.WaitGroup

	// mu guards every field below.
	mu      sync.Mutex
	scripts []*script // queued by Expect, in order
	taken   int       // scripts taken so far
	conns   map[net.Conn]struct{}
	keys    []Key
	cancels []Key
	house   []string
	closed  bool
	changed chan struct{} // closed and replaced whenever something is recorded
	nextPID uint32
}

// script is one queued script. steps and done are set by Expect; err and at are guarded
// by Server.mu.
type script struct {
	steps []Step
	done  chan struct{} // closed when the script ended, well or not
	err   error         // why it failed, if it did
	at    int           // the step running or failed; len(steps) once it ran to its end
}

// NewServer starts a Server on 127.0.0.1:0. It stops at the end of the test, and the test
// fails if a script queued by Expect was not taken or did not run to its end.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgmock: listen: %v", err)
	}
	if opts.Housekeeping == nil {
		opts.Housekeeping = DefaultHousekeeping
	}
	s := &Server{t: t, ln: ln, opts: opts, conns: make(map[net.Conn]struct{}), changed: make(chan struct{}), nextPID: 1000}
	s.wg.Go(s.accept)
	t.Cleanup(s.close)
	return s
}

// Addr is the address the server listens on, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is a connection URL for the server, without TLS.
func (s *Server) URL(user, database string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, s.Addr(), database)
}

// Expect queues a script: the next connection that sends a message other than
// housekeeping runs steps, from that message on.
func (s *Server) Expect(steps ...Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts = append(s.scripts, &script{steps: steps, done: make(chan struct{})})
}

// Keys returns the BackendKeyData sent to each connection logged in, in order.
func (s *Server) Keys() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Key(nil), s.keys...)
}

// Cancels returns the CancelRequests received, in order.
func (s *Server) Cancels() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Key(nil), s.cancels...)
}

// Housekeeping returns the housekeeping queries answered, in order.
func (s *Server) Housekeeping() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.house...)
}

// WaitCancels waits until n CancelRequests have arrived, and returns them; the test fails
// if they do not arrive within timeout.
func (s *Server) WaitCancels(n int, timeout time.Duration) []Key {
	s.t.Helper()
	ok := s.waitFor(timeout, func() bool { return len(s.cancels) >= n })
	c := s.Cancels()
	if !ok {
		s.t.Errorf("pgmock: expected %d cancel requests, got %d: %v", n, len(c), c)
	}
	return c
}

// Wait waits until every script queued so far has ended, and fails the test if one
// failed or has not ended within timeout.
func (s *Server) Wait(timeout time.Duration) {
	s.t.Helper()
	s.mu.Lock()
	scripts := append([]*script(nil), s.scripts...)
	s.mu.Unlock()
	deadline := time.After(timeout)
	for i, sc := range scripts {
		select {
		case <-sc.done:
		case <-deadline:
			s.t.Errorf("pgmock: script %d of %d did not end within %s (%s)", i+1, len(scripts), timeout, s.progress(sc))
			return
		}
	}
}

// waitFor waits until cond, called under s.mu, holds.
func (s *Server) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// noteLocked wakes waitFor. Caller must hold s.mu.
func (s *Server) noteLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) progress(sc *script) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("at step %d of %d", sc.at+1, len(sc.steps))
}

func (s *Server) close() {
	s.mu.Lock()
	s.closed = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sc := range s.scripts {
		switch {
		case i >= s.taken:
			s.t.Errorf("pgmock: script %d of %d was never run: no connection sent its first message", i+1, len(s.scripts))
		case sc.err != nil:
			// reported when it failed
		case sc.at < len(sc.steps):
			s.t.Errorf("pgmock: script %d of %d stopped at step %d of %d", i+1, len(s.scripts), sc.at+1, len(sc.steps))
		}
	}
}

func (s *Server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			s.serve(c)
		})
	}
}

// serve logs a connection in, then answers housekeeping until a script takes over.
func (s *Server) serve(nc net.Conn) {
	c := &Conn{srv: s, nc: nc, be: pgproto3.NewBackend(nc, nc)}
	if !c.login() {
		return
	}
	for {
		msg, err := c.receive()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return
		}
		s.mu.Lock()
		if s.taken == len(s.scripts) {
			s.mu.Unlock()
			if !s.isClosed() {
				s.t.Errorf("pgmock: no script for %s on connection %s", describe(msg), c.key)
			}
			return
		}
		sc := s.scripts[s.taken]
		s.taken++
		index := s.taken
		s.mu.Unlock()
		c.pending = msg
		c.run(sc, index)
		return
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Conn is one accepted connection, as a script's steps see it.
type Conn struct {
	srv     *Server
	nc      net.Conn
	be      *pgproto3.Backend
	key     Key
	pending pgproto3.FrontendMessage // received before the script started
}

// Key is the BackendKeyData this connection was given.
func (c *Conn) Key() Key { return c.key }

// login runs the startup: it records a CancelRequest, refuses TLS and GSS encryption,
// and logs a StartupMessage in. It reports whether the connection was logged in.
func (c *Conn) login() bool {
	for {
		msg, err := c.be.ReceiveStartupMessage()
		if err != nil {
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.nc.Write([]byte{'N'}); err != nil {
				return false
			}
		case *pgproto3.CancelRequest:
			c.srv.mu.Lock()
			c.srv.cancels = append(c.srv.cancels, Key{m.ProcessID, append([]byte(nil), m.SecretKey...)})
			c.srv.noteLocked()
			c.srv.mu.Unlock()
			return false
		case *pgproto3.StartupMessage:
			c.srv.mu.Lock()
			pid := c.srv.nextPID
			c.srv.nextPID++
			secret := binary.BigEndian.AppendUint32(nil, pid*2654435761)
			c.key = Key{ProcessID: pid, SecretKey: secret}
			c.srv.keys = append(c.srv.keys, c.key)
			c.srv.noteLocked()
			c.srv.mu.Unlock()
			c.be.Send(&pgproto3.AuthenticationOk{})
			params := make(map[string]string, len(DefaultParams))
			for k, v := range DefaultParams {
				params[k] = v
			}
			if u := m.Parameters["user"]; u != "" {
				params["session_authorization"] = u
			}
			for k, v := range c.srv.opts.Params {
				params[k] = v
			}
			for k, v := range params {
				c.be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
			}
			c.be.Send(&pgproto3.BackendKeyData{ProcessID: c.key.ProcessID, SecretKey: c.key.SecretKey})
			c.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			return c.be.Flush() == nil
		default:
			c.srv.t.Errorf("pgmock: unexpected startup message %s", describe(msg))
			return false
		}
	}
}

// receive returns the next frontend message that is not housekeeping, answering
// housekeeping on the way.
func (c *Conn) receive() (pgproto3.FrontendMessage, error) {
	for {
		msg, err := c.be.Receive()
		if err != nil {
			return nil, err
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok {
			return msg, nil
		}
		ans, ok := c.srv.opts.Housekeeping(q.String)
		if !ok {
			return msg, nil
		}
		c.srv.mu.Lock()
		c.srv.house = append(c.srv.house, q.String)
		c.srv.noteLocked()
		c.srv.mu.Unlock()
		if err := c.answer(ans); err != nil {
			return nil, err
		}
	}
}

func (c *Conn) answer(a Answer) error {
	if a.Tag == "" && a.Columns == nil {
		return c.Send(&pgproto3.EmptyQueryResponse{}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
	return c.Send(Reply(a.Columns, a.Rows, a.Tag, 'I')...)
}

// Receive returns the next frontend message of the script, housekeeping answered and
// skipped. The message is valid until the next Receive.
func (c *Conn) Receive() (pgproto3.FrontendMessage, error) {
	if m := c.pending; m != nil {
		c.pending = nil
		return m, nil
	}
	msg, err := c.receive()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, errors.New("connection closed by the client")
	}
	if _, ok := msg.(*pgproto3.Terminate); ok {
		return nil, errors.New("connection closed by the client (Terminate)")
	}
	return msg, err
}

// Send queues msgs and flushes them.
func (c *Conn) Send(msgs ...pgproto3.BackendMessage) error {
	for _, m := range msgs {
		c.be.Send(m)
	}
	return c.be.Flush()
}

// Close closes the connection, as a backend that exits.
func (c *Conn) Close() error { return c.nc.Close() }

func (c *Conn) run(sc *script, index int) {
	for i, st := range sc.steps {
		c.srv.mu.Lock()
		sc.at = i
		c.srv.mu.Unlock()
		if err := st(c); err != nil {
			c.srv.mu.Lock()
			sc.err = err
			closed := c.srv.closed
			total := len(c.srv.scripts)
			c.srv.mu.Unlock()
			if closed {
				err = fmt.Errorf("%w (the server was stopped)", err)
			}
			c.srv.t.Errorf("pgmock: script %d of %d, step %d of %d (connection %s): %v", index, total, i+1, len(sc.steps), c.key, err)
			close(sc.done)
			return
		}
	}
	c.srv.mu.Lock()
	sc.at = len(sc.steps)
	c.srv.noteLocked()
	c.srv.mu.Unlock()
	close(sc.done)
	// The script is over: keep answering housekeeping until the client leaves.
	for {
		msg, err := c.receive()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return
		}
		if !c.srv.isClosed() {
			c.srv.t.Errorf("pgmock: script %d ended, then connection %s got %s", index, c.key, describe(msg))
		}
		return
	}
}
