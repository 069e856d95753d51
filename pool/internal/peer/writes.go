// Package peer carries write notices between peered cmpool instances, for
// read-your-writes across instances (consistency user, origin or global): when a
// transaction that may have written commits through one instance, before its client is
// told, that instance sends the write's database, user and client address to every
// peer, which counts it as a write of that scope committed when the notice arrived
// (after the commit, on the peer's own clock).
//
// A link is a TCP connection to the peer's listen address that opens with a
// StartupMessage carrying StartupParam = LinkWrites, then carries one notice per write:
// 'W', an int32 length (itself included) and database, user and address, each ended by
// a zero byte. The peer answers each with one byte, 'K'. A notice that fails or is not
// answered within NoticeTimeout is dropped (a read may then see that write late), and
// the link is not tried again for RetryAfter.
package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// StartupParam is the startup parameter that opens a link; LinkWrites its value for
	// a link of write notices.
	StartupParam = "cmpool.peer"
	LinkWrites   = "writes"
	// NoticeTimeout bounds one batch of notices to one peer, dialing included.
	NoticeTimeout = 100 * time.Millisecond
	// RetryAfter is how long a link that failed is left alone.
	RetryAfter = time.Second
	// PollInterval is how often a link's receiving end asks whether to stop.
	PollInterval = 250 * time.Millisecond
	// maxNotice bounds the body of a notice.
	maxNotice = 4096
)

// ErrBadNotice is returned by Serve for a message that is not a well-formed notice.
var ErrBadNotice = errors.New("invalid peer write notice")

// Links holds an instance's links to its peers, by address. The zero value has none and
// is ready.
type Links struct {
	mu     sync.Mutex
	links  map[string]*Link // guarded by mu
	closed bool             // CloseAll was called; guarded by mu
}

// Link is one link to a peer. Notices to it are batched: while one batch is on the
// wire, the notices of other writes queue, and the first of them sends them all at once
// when it is answered, as PostgreSQL's group commit does with WAL flushes.
type Link struct {
	addr string

	mu      sync.Mutex
	queue   []byte       // notices not sent yet; guarded by mu
	waiters []chan error // one per notice in queue, in order; guarded by mu
	busy    bool         // a batch is being sent; guarded by mu
	closed  bool         // CloseAll was called: nothing more is sent; guarded by mu

	// Used only by the sender of the batch in flight (busy hands them over).
	conn     net.Conn // nil until dialed, and after a failure
	failedAt time.Time
}

// errYourTurn tells a waiting notice that it sends the next batch.
var errYourTurn = errors.New("send the next batch")

// Link returns the link to addr, made on first use.
func (p *Links) Link(addr string) *Link {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.links == nil {
		p.links = make(map[string]*Link)
	}
	l := p.links[addr]
	if l == nil {
		l = &Link{addr: addr, closed: p.closed}
		p.links[addr] = l
	}
	return l
}

// CloseAll closes every link, at shutdown; later notices are dropped.
func (p *Links) CloseAll() {
	p.mu.Lock()
	links := p.links
	p.links, p.closed = nil, true
	p.mu.Unlock()
	for _, l := range links {
		l.mu.Lock()
		l.closed = true
		if !l.busy && l.conn != nil { // else its sender closes it
			_ = l.conn.Close()
			l.conn = nil
		}
		l.mu.Unlock()
	}
}

// AppendNotice appends a write notice to b.
func AppendNotice(b []byte, database, user, addr string) []byte {
	start := len(b)
	b = append(b, 'W', 0, 0, 0, 0)
	for _, f := range []string{database, user, addr} {
		b = append(b, f...)
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b[start+1:start+5], uint32(len(b)-start-1))
	return b
}

// ParseNotice parses the body of a write notice (after its length).
func ParseNotice(body []byte) (database, user, addr string, ok bool) {
	var f [3]string
	for i := range f {
		j := bytes.IndexByte(body, 0)
		if j < 0 {
			return "", "", "", false
		}
		f[i], body = string(body[:j]), body[j+1:]
	}
	return f[0], f[1], f[2], len(body) == 0
}

// Send sends one notice (AppendNotice) on the link, with those queued behind a batch in
// flight, and waits for its answer. After a failure it returns nil without sending for
// RetryAfter: the failure was reported.
func (l *Link) Send(notice []byte) error {
	done := make(chan error, 1)
	l.mu.Lock()
	l.queue = append(l.queue, notice...)
	l.waiters = append(l.waiters, done)
	if l.busy {
		l.mu.Unlock()
		if err := <-done; err != errYourTurn {
			return err
		}
		l.mu.Lock()
	}
	l.busy = true
	batch, waiters, closed := l.queue, l.waiters, l.closed
	l.queue, l.waiters = nil, nil
	l.mu.Unlock()
	var err error
	if !closed {
		err = l.sendBatch(batch, len(waiters))
	}
	for _, w := range waiters {
		if w != done {
			w <- err
		}
	}
	l.mu.Lock()
	if l.closed && l.conn != nil {
		_ = l.conn.Close()
		l.conn = nil
	}
	if len(l.waiters) > 0 {
		l.waiters[0] <- errYourTurn
	} else {
		l.busy = false
	}
	l.mu.Unlock()
	return err
}

// sendBatch sends n notices, dialing the link first if needed, and waits for their 'K's.
// Only the sender of the batch in flight calls it.
func (l *Link) sendBatch(batch []byte, n int) error {
	if l.conn == nil {
		if !l.failedAt.IsZero() && time.Since(l.failedAt) < RetryAfter {
			return nil // failed lately: reported then
		}
		if err := l.dial(); err != nil {
			l.failedAt = time.Now()
			return err
		}
	}
	err := l.roundTrip(batch, n)
	if err != nil {
		_ = l.conn.Close()
		l.conn, l.failedAt = nil, time.Now()
	}
	return err
}

// dial opens the link. Only the sender of the batch in flight calls it.
func (l *Link) dial() error {
	conn, err := net.DialTimeout("tcp", l.addr, NoticeTimeout)
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	sm := pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "cmpool", StartupParam: LinkWrites}}
	b, err := sm.Encode(nil)
	if err == nil {
		_ = conn.SetWriteDeadline(time.Now().Add(NoticeTimeout))
		_, err = conn.Write(b)
	}
	if err != nil {
		_ = conn.Close()
		return err
	}
	l.conn = conn
	return nil
}

// roundTrip sends n notices and reads their answers. Only the sender of the batch in
// flight calls it.
func (l *Link) roundTrip(notices []byte, n int) error {
	_ = l.conn.SetDeadline(time.Now().Add(NoticeTimeout))
	if _, err := l.conn.Write(notices); err != nil {
		return err
	}
	acks := make([]byte, n)
	if _, err := io.ReadFull(l.conn, acks); err != nil {
		return err
	}
	for _, a := range acks {
		if a != 'K' {
			return fmt.Errorf("peer answered a write notice with %q", a)
		}
	}
	return nil
}

// Serve serves the receiving end of a link, once its StartupMessage is read: r reads
// conn (it may buffer). It calls note for each notice, then answers it. It returns nil
// when the peer closes the link or stop reports true (asked every PollInterval), and
// ErrBadNotice for a malformed message.
func Serve(conn net.Conn, r io.Reader, stop func() bool, note func(database, user, addr string)) error {
	var hdr [5]byte
	body := make([]byte, 0, 128)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(PollInterval))
		if _, err := io.ReadFull(r, hdr[:1]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !stop() {
				continue
			}
			return nil
		}
		_ = conn.SetReadDeadline(time.Now().Add(NoticeTimeout))
		if _, err := io.ReadFull(r, hdr[1:]); err != nil {
			return nil
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if hdr[0] != 'W' || n < 0 || n > maxNotice {
			return ErrBadNotice
		}
		body = slices.Grow(body[:0], n)[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return nil
		}
		database, user, addr, ok := ParseNotice(body)
		if !ok {
			return ErrBadNotice
		}
		note(database, user, addr)
		_ = conn.SetWriteDeadline(time.Now().Add(NoticeTimeout))
		if _, err := conn.Write([]byte{'K'}); err != nil {
			return nil
		}
	}
}
