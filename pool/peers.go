package pool

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/peer"
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

// tellPeers tells every peer but this instance of a write by user on database from the
// client address addr, and waits for their answers (see package peer).
func (s *Server) tellPeers(database, user, addr string) {
	cfg := s.conf()
	if len(cfg.Peers) == 0 {
		return
	}
	notice := peer.AppendNotice(nil, database, user, addr)
	for id, to := range cfg.Peers {
		if id == s.cfg.PeerID {
			continue
		}
		if err := s.peerLinks.Link(to).Send(notice); err != nil {
			s.log.Warn("cannot tell a peer of a write", "peer", to, "error", err)
		}
	}
}

// servePeerLink serves the receiving end of a peer's link (the client c opened it with
// peer.StartupParam): each write notice counts as a write of its scope committed now.
// It refuses links when this instance has no peers.
func (c *clientSession) servePeerLink(kind string) error {
	s := c.srv
	if kind != peer.LinkWrites || len(s.conf().Peers) == 0 {
		return protocol.NewFatal(protocol.CodeProtocolViolation, "not a cmpool peer link this instance accepts")
	}
	stop := func() bool { return c.Closing.Load() || s.closing.Load() }
	err := peer.Serve(c.Conn.Net, c.Conn.R, stop, func(database, user, addr string) {
		now := time.Now()
		s.noteWrite(now)
		if key := router.ScopeKey(s.conf().Consistency, addr, database, user); key != "" {
			s.scopes.note(key, now)
		}
	})
	if err != nil {
		return protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
	}
	return io.EOF
}
