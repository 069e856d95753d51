package pool

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Several cmpool instances behind one address (SO_REUSEPORT or a TCP load balancer) see
// each other's CancelRequests: a client's cancel opens a new connection, which may land on
// any instance. As in PgBouncer's peering, each instance has a peer id that its cancel
// keys carry, and forwards a CancelRequest for another id to that peer.

// MaxPeerID is the largest PeerID: the id fills bits 16-30 of a cancel key's process id.
const MaxPeerID = 1<<15 - 1

// peerIDShift places the peer id in a cancel key's process id; the low bits are random.
const peerIDShift = 16

// maxPeeredClients bounds max_client_conn with a PeerID: each instance has 2^16 process
// ids (the secret keeps its 32 random bits).
const maxPeeredClients = 1<<peerIDShift - 1

// peerForwardTimeout bounds forwarding one CancelRequest to a peer.
const peerForwardTimeout = 5 * time.Second

// newCancelPID returns a random positive process id for a cancel key that carries this
// instance's peer id, if it has one.
func (s *Server) newCancelPID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	pid := binary.BigEndian.Uint32(b[:]) &^ (1 << 31) // positive, like a real pid
	if s.cfg.PeerID > 0 {
		pid = uint32(s.cfg.PeerID)<<peerIDShift | pid&(1<<s.peerPIDBits()-1)
	}
	return pid
}

// peerPIDBits is how many low bits of a peered cancel key's process id are random:
// peerIDShift, unless a test narrowed them (cancelPIDBits).
func (s *Server) peerPIDBits() uint {
	if s.cancelPIDBits > 0 {
		return s.cancelPIDBits
	}
	return peerIDShift
}

// peerOf returns the peer address a CancelRequest with this process id belongs to, or ""
// when it is this instance's (or no peer is configured for its id). The peer id is the one
// this instance started with (its clients' cancel keys carry it); the peers' addresses are
// the live configuration's, which a reload may change.
func (s *Server) peerOf(pid uint32) string {
	peers := s.conf().Peers
	if s.cfg.PeerID == 0 || len(peers) == 0 {
		return ""
	}
	id := int(pid >> peerIDShift)
	if id == s.cfg.PeerID {
		return ""
	}
	return peers[id]
}

// forwardCancel sends req to the peer at addr, as a client would: a new connection that
// carries only the CancelRequest.
func (s *Server) forwardCancel(ctx context.Context, addr string, req *pgproto3.CancelRequest) {
	ctx, cancel := context.WithTimeout(ctx, peerForwardTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		s.log.Warn("cannot forward a cancel request to its peer", "peer", addr, "error", err)
		return
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	b, _ := req.Encode(nil)
	if _, err := conn.Write(b); err != nil {
		s.log.Warn("cannot forward a cancel request to its peer", "peer", addr, "error", err)
		return
	}
	// The peer closes the connection once it has acted on the request.
	var one [1]byte
	_, _ = conn.Read(one[:])
	s.log.Debug("cancel request forwarded to its peer", "peer", addr, "pid", req.ProcessID)
}

// Peers also tell each other of writes, for read-your-writes across instances
// (consistency user, origin or global): when a transaction that may have written
// commits through one instance, before its client is told, that instance sends the
// write's database, user and client address to every peer, which counts it as a write
// of that scope committed when the notice arrived (after the commit, on the peer's own
// clock). A read through the peer then waits for, or avoids, the replicas that lack it.
//
// A link is a TCP connection to the peer's listen address that opens with a
// StartupMessage carrying cmpool.peer = writes, then carries one notice per write:
// 'W', an int32 length (itself included) and database, user and address, each ended by
// a zero byte. The peer answers each with one byte, 'K'. A notice that fails or is not
// answered within peerNoticeTimeout is dropped (the read may then see that write late),
// and the link is not tried again for peerRetryAfter.

const (
	// peerStartupParam is the startup parameter that opens a link of write notices.
	peerStartupParam = "cmpool.peer"
	peerLinkWrites   = "writes"
	// peerNoticeTimeout bounds one notice to one peer, dialing included.
	peerNoticeTimeout = 100 * time.Millisecond
	// peerRetryAfter is how long a link that failed is left alone.
	peerRetryAfter = time.Second
	// peerPollInterval is how often a link's receiving end looks for a shutdown.
	peerPollInterval = 250 * time.Millisecond
	// maxPeerNotice bounds the body of a notice.
	maxPeerNotice = 4096
)

// peerLinks holds this instance's links to its peers, by address. The zero value has
// none and is ready.
type peerLinks struct {
	mu     sync.Mutex
	links  map[string]*peerLink // guarded by mu
	closed bool                 // closeAll was called; guarded by mu
}

// peerLink is one link to a peer. Notices to it are batched: while one batch is on the
// wire, the notices of other writes queue, and the first of them sends them all at once
// when it is answered, as PostgreSQL's group commit does with WAL flushes.
type peerLink struct {
	addr string

	mu      sync.Mutex
	queue   []byte       // notices not sent yet; guarded by mu
	waiters []chan error // one per notice in queue, in order; guarded by mu
	busy    bool         // a batch is being sent; guarded by mu
	closed  bool         // the server shut down: nothing more is sent; guarded by mu

	// Used only by the sender of the batch in flight (busy hands them over).
	conn     net.Conn // nil until dialed, and after a failure
	failedAt time.Time
}

// errPeerYourTurn tells a waiting notice that it sends the next batch.
var errPeerYourTurn = errors.New("send the next batch")

// link returns the link to addr, made on first use.
func (p *peerLinks) link(addr string) *peerLink {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.links == nil {
		p.links = make(map[string]*peerLink)
	}
	l := p.links[addr]
	if l == nil {
		l = &peerLink{addr: addr, closed: p.closed}
		p.links[addr] = l
	}
	return l
}

// closeAll closes every link, at shutdown; later notices are dropped.
func (p *peerLinks) closeAll() {
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

// tellPeers tells every peer but this instance of a write by user on database from the
// client address addr, and waits for their answers (see peerLinks).
func (s *Server) tellPeers(database, user, addr string) {
	cfg := s.conf()
	if len(cfg.Peers) == 0 {
		return
	}
	notice := appendPeerNotice(nil, database, user, addr)
	for id, peer := range cfg.Peers {
		if id == s.cfg.PeerID {
			continue
		}
		if err := s.peerLinks.link(peer).send(notice); err != nil {
			s.log.Warn("cannot tell a peer of a write", "peer", peer, "error", err)
		}
	}
}

// appendPeerNotice appends a write notice to b.
func appendPeerNotice(b []byte, database, user, addr string) []byte {
	b = append(b, 'W', 0, 0, 0, 0)
	for _, f := range []string{database, user, addr} {
		b = append(b, f...)
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-1))
	return b
}

// parsePeerNotice parses the body of a write notice (after its length).
func parsePeerNotice(body []byte) (database, user, addr string, ok bool) {
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

// send sends one notice on the link, with those queued behind a batch in flight, and
// waits for its answer.
func (l *peerLink) send(notice []byte) error {
	done := make(chan error, 1)
	l.mu.Lock()
	l.queue = append(l.queue, notice...)
	l.waiters = append(l.waiters, done)
	if l.busy {
		l.mu.Unlock()
		if err := <-done; err != errPeerYourTurn {
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
		l.waiters[0] <- errPeerYourTurn
	} else {
		l.busy = false
	}
	l.mu.Unlock()
	return err
}

// sendBatch sends n notices, dialing the link first if needed, and waits for their 'K's.
// Only the sender of the batch in flight calls it.
func (l *peerLink) sendBatch(batch []byte, n int) error {
	if l.conn == nil {
		if !l.failedAt.IsZero() && time.Since(l.failedAt) < peerRetryAfter {
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
func (l *peerLink) dial() error {
	conn, err := net.DialTimeout("tcp", l.addr, peerNoticeTimeout)
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	sm := pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "cmpool", peerStartupParam: peerLinkWrites}}
	b, err := sm.Encode(nil)
	if err == nil {
		_ = conn.SetWriteDeadline(time.Now().Add(peerNoticeTimeout))
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
func (l *peerLink) roundTrip(notices []byte, n int) error {
	_ = l.conn.SetDeadline(time.Now().Add(peerNoticeTimeout))
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

// servePeerLink serves the receiving end of a peer's link (the client c opened it with
// cmpool.peer = writes): each write notice counts as a write of its scope committed now.
// It refuses links when this instance has no peers.
func (c *clientSession) servePeerLink(kind string) error {
	s := c.srv
	if kind != peerLinkWrites || len(s.conf().Peers) == 0 {
		return protocol.NewFatal(protocol.CodeProtocolViolation, "not a cmpool peer link this instance accepts")
	}
	var hdr [5]byte
	body := make([]byte, 0, 128)
	for {
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(peerPollInterval))
		if _, err := io.ReadFull(c.Conn.R, hdr[:1]); err != nil {
			if lease.IsTimeout(err) && !c.Closing.Load() && !s.closing.Load() {
				continue
			}
			return io.EOF
		}
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(peerNoticeTimeout))
		if _, err := io.ReadFull(c.Conn.R, hdr[1:]); err != nil {
			return io.EOF
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if hdr[0] != 'W' || n < 0 || n > maxPeerNotice {
			return protocol.NewFatal(protocol.CodeProtocolViolation, "invalid peer write notice")
		}
		body = slices.Grow(body[:0], n)[:n]
		if _, err := io.ReadFull(c.Conn.R, body); err != nil {
			return io.EOF
		}
		database, user, addr, ok := parsePeerNotice(body)
		if !ok {
			return protocol.NewFatal(protocol.CodeProtocolViolation, "invalid peer write notice")
		}
		now := time.Now()
		s.noteWrite(now)
		if key := router.ScopeKey(s.conf().Consistency, addr, database, user); key != "" {
			s.scopes.note(key, now)
		}
		_ = c.Conn.Net.SetWriteDeadline(time.Now().Add(peerNoticeTimeout))
		if _, err := c.Conn.Net.Write([]byte{'K'}); err != nil {
			return io.EOF
		}
	}
}
