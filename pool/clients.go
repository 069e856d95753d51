package pool

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
)

// cancelKey is the BackendKeyData cmpool gives a client.
type cancelKey struct {
	pid    uint32
	secret [4]byte
}

// registerClient gives c a cancel key no other client holds, at the end of its login,
// before BackendKeyData is sent: a connection that never logs in holds none. With a
// PeerID the keys are a small space (see maxPeeredClients); when every one is taken the
// login fails with 53300.
func (s *Server) registerClient(c *clientSession) error {
	var secret [4]byte
	_, _ = rand.Read(secret[:])
	var draws [cancelKeyDraws]uint32
	for i := range draws {
		draws[i] = s.newCancelPID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pid, ok := s.freeCancelPIDLocked(draws[:])
	if !ok {
		return protocol.NewFatal(protocol.CodeTooManyConnections,
			fmt.Sprintf("no more connections allowed: all %d cancel keys of peer_id %d are in use", len(s.clients), s.cfg.PeerID))
	}
	c.key = cancelKey{pid: pid, secret: secret}
	s.clients[pid] = c
	return nil
}

// cancelKeyDraws is how many random process ids registerClient tries before it scans
// the key space for a free one.
const cancelKeyDraws = 8

// freeCancelPIDLocked returns a process id no client holds: the first free one of draws,
// else, with a PeerID, the first free one of this instance's space after a random start.
// It reports false when there is none. The caller holds s.mu.
func (s *Server) freeCancelPIDLocked(draws []uint32) (uint32, bool) {
	for _, pid := range draws {
		if _, used := s.clients[pid]; !used && pid != 0 {
			return pid, true
		}
	}
	if s.cfg.PeerID == 0 {
		// 2^31 ids for at most MaxClientConn clients: every draw taken means the random
		// source is broken, not that the space is full.
		return 0, false
	}
	size := uint32(1) << s.peerPIDBits()
	base := uint32(s.cfg.PeerID) << peerIDShift
	start := draws[0] - base
	for i := range size {
		pid := base | (start+i)&(size-1)
		if _, used := s.clients[pid]; !used {
			return pid, true
		}
	}
	return 0, false
}

// unregisteredKey returns a cancel key that cancels nothing, for admin console clients,
// which have nothing to cancel and so hold none of the keys.
func (s *Server) unregisteredKey() cancelKey {
	k := cancelKey{pid: s.newCancelPID()}
	_, _ = rand.Read(k.secret[:])
	return k
}

func (s *Server) forgetClient(c *clientSession) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.clients[c.key.pid] == c {
		delete(s.clients, c.key.pid)
	}
	s.mu.Unlock()
	s.nClients.Add(-1)
}

// handleCancel forwards a client's CancelRequest to the server that client holds right
// now, if the client has requests outstanding on it, and nowhere else (see cancel.go).
func (s *Server) handleCancel(ctx context.Context, req *pgproto3.CancelRequest) {
	if peer := s.peerOf(req.ProcessID); peer != "" {
		s.forwardCancel(ctx, peer, req)
		return
	}
	s.mu.Lock()
	c := s.clients[req.ProcessID]
	s.mu.Unlock()
	if c == nil || subtle.ConstantTimeCompare(c.key.secret[:], req.SecretKey) != 1 {
		s.log.Debug("cancel request for unknown client", "pid", req.ProcessID)
		return
	}
	c.Mu.Lock()
	l := c.Lease
	c.Mu.Unlock()
	sent, err := c.CancelRunning(ctx, l, true)
	switch {
	case err != nil:
		s.log.Warn("cancel request failed", "error", err)
	case !sent:
		s.log.Debug("cancel request dropped: nothing of the client's is running", "pid", req.ProcessID)
	}
}
