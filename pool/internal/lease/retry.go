package lease

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
)

// Retrying a statement whose cached plan went stale.
//
// After DDL changes a prepared statement's result type, the server fails its next Bind
// with 0A000 "cached plan must not change result type". cmpool renews the statement's
// server-side name (see stmt.Plan.Error) and, when it is safe, replays the client's request
// once, hiding the first failure:
//   - the failed Sync segment held only extended-protocol messages, at most
//     maxRetrySegment bytes, and the client sent nothing after its Sync;
//   - the server was idle when the segment began (no explicit transaction to break);
//   - nothing of the segment's replies had reached the client yet;
//   - the segment has a Describe, so the client learns the new row shape from the replay.
//     A client that skips Describe trusts a row description it cached (pgx's default
//     mode does): it must see the error, or it would read rows of the new shape with the
//     old description.
// Otherwise the client gets the error, and its next execution prepares afresh.

// maxRetrySegment bounds the copy of a Sync segment kept for a retry.
const maxRetrySegment = 16 << 10

// recordForRetry keeps a copy of the client's extended-protocol messages of the current
// Sync segment. It runs on the client goroutine for every message sent on l.
func (l *Lease) recordForRetry(typ byte, msg []byte) {
	c := l.c
	c.Mu.Lock()
	defer c.Mu.Unlock()
	switch typ {
	case 'S':
		l.segDone = true
		return
	case 'P', 'B', 'D', 'E', 'C':
		if l.segDone {
			l.seg, l.segDone, l.segOK = l.seg[:0], false, l.pending == 0 && l.sc.TxStatus == 'I'
		}
		if l.segOK && msg != nil && len(l.seg)+len(msg) <= maxRetrySegment {
			l.seg = append(l.seg, msg...)
		} else {
			l.segOK = false
		}
	case 'Q':
		// Kept only on replicas, for the read-only safety net.
		l.segDone = true
		l.segOK = l.replica >= 0 && len(msg) <= maxRetrySegment && l.pending == 1 && l.sc.TxStatus == 'I'
		if l.segOK {
			l.seg = append(l.seg[:0], msg...)
		}
	case 'H':
	default:
		l.segOK, l.segDone = false, true
	}
}

// holdForRetry decides, at an ErrorResponse, whether to hide it and replay the segment
// at its ReadyForQuery. It runs on the relay.
func (l *Lease) holdForRetry(msg []byte) bool {
	c := l.c
	stale := stmt.CachedPlanChanged(msg)
	readOnly := l.replica >= 0 && !l.forced && bytes.Contains(msg, readOnlyCode)
	gone := l.replica >= 0 && replicaGoing(msg)
	if !stale && !readOnly && !gone || l.answered {
		return false
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if !l.segOK || !l.segDone || l.retried || l.unsynced || l.sentSeq != l.recvSeq+1 || stale && !hasDescribe(l.seg) {
		return false
	}
	l.retried = true
	l.toPrimary = readOnly
	l.away = gone
	l.heldErr = append(l.heldErr[:0], msg...)
	return true
}

// replicaGoing reports whether ErrorResponse msg says the server is going away under
// the request: shut down (57P01 admin_shutdown, 57P02 crash_shutdown) or not accepting
// connections (57P03 cannot_connect_now). Its connection closes next.
func replicaGoing(msg []byte) bool {
	for _, code := range goingCodes {
		if bytes.Contains(msg, code) {
			return true
		}
	}
	return false
}

// goingCodes are the SQLSTATE fields replicaGoing looks for.
var goingCodes = [][]byte{[]byte("C57P01\x00"), []byte("C57P02\x00"), []byte("C57P03\x00")}

// Replaying a read whose replica failed.
//
// A replica that dies (kill -9, a crash, a fast shutdown, a cut network) fails the reads
// running on it: its connection ends (EOF, a reset, query_timeout with no answer even to
// a cancel), sometimes after an ErrorResponse 57P01/57P02 that holdForRetry holds back.
// The replica is banned at once, so that the next reads of every client avoid it. The
// read itself runs again elsewhere, on a new lease (replayElsewhere), when the same rules
// as for the 25006 safety net say that is safe: one Query, or one Sync segment of
// extended-protocol messages, sent while the server was idle (no transaction block to
// lose), with nothing else sent after it, and nothing of its replies has reached the
// client. It goes to another usable replica that has replayed the client's writes, or
// to the primary; a read the client forced onto replicas (a hint, cmpool.route) goes to
// a replica only. Otherwise, or when no server can be had, the client gets the error, as
// for any lost server.

// failedOnReplica runs on the relay when l's server failed with err (not a protocol
// violation, and not a stop by the client goroutine). On a replica, it bans the replica
// and, when it can, replays the request elsewhere (replayElsewhere); it reports whether it
// did, in which case l is over and the client has a new lease. The caller holds no lock.
func (l *Lease) failedOnReplica(err error) bool {
	if l.replica < 0 || l.rs == nil {
		return false
	}
	l.rs.Ban(l.replica, fmt.Errorf("server connection lost: %w", err))
	return l.replayElsewhere(err)
}

// replayElsewhere replays the request of l, whose replica failed, on a new lease: see
// above. It reports false, changing nothing, when the request cannot be replayed; then
// the client gets the error. Once it has begun, the outcome is the new lease's, or, when
// no server could be had, the failure's: the client is told and closed.
func (l *Lease) replayElsewhere(cause error) bool {
	c := l.c
	if l.answered || len(l.heldErr) > 0 && !l.away || l.retried && !l.away {
		return false
	}
	c.Mu.Lock()
	if !l.segOK || !l.segDone || l.unsynced || l.sentSeq != l.recvSeq+1 || l.state != leaseRelaying || len(l.seg) == 0 {
		c.Mu.Unlock()
		return false
	}
	seg := l.beginReplayLocked()
	c.Mu.Unlock()
	l.heldReplies = l.heldReplies[:0]
	l.giveBack(true)
	c.Log.Info("replica failed under a read: running it again elsewhere", "backend", l.pool.Name, "error", cause)

	bp, res, route, err := c.Host.AcquireRead(c.Host.Context(), l.forced)
	if err == nil {
		if err = c.ApplyParams(c.Host.Context(), res.Value()); err != nil {
			bp.GiveBack(res, true)
			if route.Replica >= 0 {
				route.RS.Done(route.Replica)
			}
		}
	}
	if err != nil {
		c.Log.Warn("cannot run a read again after its replica failed", "error", err)
		if len(l.heldErr) > 0 {
			c.Conn.WMu.Lock()
			_, _ = c.Conn.W.Write(l.heldErr)
			c.Conn.WMu.Unlock()
		}
		l.relayFailedWith(protocol.NewFatal(protocol.CodeConnectionFailure, "server connection lost: "+cause.Error()))
		return true
	}
	nl := &Lease{c: c, pool: bp, res: res, sc: res.Value(), done: make(chan struct{}), segDone: true,
		replica: route.Replica, rs: route.RS, forced: route.Forced,
		queryTimeout: 2 * c.Host.Config().QueryTimeout}
	nl.sc.Linked.Store(c.ID)
	nl.sc.SetBlockHook(c.Host.BlockHook())
	out := nl.planSegment(seg)
	c.Mu.Lock()
	nl.takeOverLocked()
	c.Mu.Unlock()
	c.Host.ReadReplayed()
	nl.sendReplay(out)
	return true
}

// beginReplayLocked counts l's failed request as answered and moves l to syncing, so that
// the client goroutine waits for the replay's new lease; it returns a copy of the request.
// The caller holds c.Mu.
func (l *Lease) beginReplayLocked() []byte {
	l.recvSeq++
	l.pending = 0
	l.to(leaseSyncing)
	return bytes.Clone(l.seg)
}

// takeOverLocked makes nl, the new lease of a replay, the client's lease, relaying. The
// caller holds c.Mu.
func (nl *Lease) takeOverLocked() {
	c := nl.c
	nl.to(leaseRelaying)
	c.Lease = nl
	c.broadcastIdle()
}

// sendReplay writes out, the replayed request, to nl's server, and starts nl's relay.
func (nl *Lease) sendReplay(out []byte) {
	nl.wmu.Lock()
	_, _ = nl.sc.Writer.Write(out)
	if err := nl.sc.Writer.Flush(); err != nil {
		nl.c.Log.Debug("replay write failed", "error", err)
	}
	nl.wmu.Unlock()
	go nl.relay()
}

// planSegment accounts for seg, a Query or a Sync segment's messages kept for a retry,
// as sent on l, a new lease, and returns the bytes to send its server: the Query, or the
// segment planned for that server's prepared statements and its Sync. On a replica, the
// replay is kept for the safety nets as the original was. The caller holds no lock; l is
// not the client's lease yet.
func (l *Lease) planSegment(seg []byte) []byte {
	c := l.c
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if seg[0] == 'Q' {
		l.account('Q')
		if l.replica >= 0 {
			l.seg, l.segOK, l.segDone = append(l.seg[:0], seg...), true, true
		}
		return seg
	}
	var out []byte
	for b := seg; len(b) >= protocol.HeaderLen; {
		n := frameLen(b)
		l.account(b[0])
		if b[0] == 'P' {
			c.Stmts.ForgetReplayed(b[:n]) // it is planned again here
		}
		out, _, _ = l.planExtended(b[:n], out)
		b = b[n:]
	}
	l.account('S')
	if l.replica >= 0 {
		l.seg, l.segOK, l.segDone = append(l.seg[:0], seg...), true, true
	}
	return append(out, 'S', 0, 0, 0, 4)
}

// readOnlyCode is the SQLSTATE field of read_only_sql_transaction (25006), which a
// replica raises for a statement that writes.
var readOnlyCode = []byte("C25006\x00")

// replayOnPrimary runs on the relay, which holds c.client.wmu. It is the safety net for a
// statement routed to a replica that turned out to write: the replica refused it with
// 25006 before anything reached the client, so the replica lease ends and the same
// request runs on the primary, on a new lease. It reports false when the request cannot
// be replayed; then the held error goes to the client. It lets go of c.client.wmu while it
// waits for the replica's cancels and for a primary server, and takes it back before it
// returns. (Meanwhile the lease is syncing: the client goroutine writes nothing to the
// client until it is over.)
func (l *Lease) replayOnPrimary(status byte) bool {
	c := l.c
	c.Mu.Lock()
	// A pinned lease keeps its server: its session state is there (the client gets the
	// 25006).
	if status != 'I' || l.unsynced || l.sentSeq != l.recvSeq+1 || l.state != leaseRelaying || l.pinnedLocked() {
		c.Mu.Unlock()
		return false
	}
	seg := l.beginReplayLocked()
	c.Mu.Unlock()
	c.Conn.WMu.Unlock()

	// Give the replica's server back. l is syncing: no new cancel starts, and l stays
	// the client's lease, given back, until the new one replaces it.
	l.giveBack(false)

	// Take a primary server with the client's settings.
	primary, res, err := c.Host.AcquirePrimary(c.Host.Context())
	if err == nil {
		if err = c.ApplyParams(c.Host.Context(), res.Value()); err != nil {
			primary.GiveBack(res, true)
		}
	}
	c.Conn.WMu.Lock()
	if err != nil {
		c.Log.Warn("cannot replay a read-only failure on the primary", "error", err)
		_, _ = c.Conn.W.Write(l.heldErr)
		_, _ = c.Conn.W.Write(ReadyIdle)
		_ = c.Conn.W.Flush()
		c.Mu.Lock()
		if c.Lease == l {
			c.Lease = nil
		}
		c.broadcastIdle()
		c.Mu.Unlock()
		return true
	}
	nl := &Lease{c: c, pool: primary, res: res, sc: res.Value(), done: make(chan struct{}), segDone: true, replica: -1, needLSN: true,
		queryTimeout: 2 * c.Host.Config().QueryTimeout}
	nl.sc.SetBlockHook(c.Host.BlockHook())
	out := nl.planSegment(seg)
	c.Mu.Lock()
	nl.takeOverLocked()
	c.Mu.Unlock()
	c.Host.ReadOnlyReplayed()
	nl.sendReplay(out)
	return true
}

// retrySegment replays the held segment at the ReadyForQuery that closed its failure. It
// reports false when the client sent more meanwhile: then the held error goes out and the
// ReadyForQuery is handled as usual.
func (l *Lease) retrySegment(status byte) bool {
	c := l.c
	c.Mu.Lock()
	if status != 'I' || l.unsynced || l.sentSeq != l.recvSeq+1 {
		c.Mu.Unlock()
		return false
	}
	l.recvSeq++ // the failed segment is answered; its replay is a new one
	syncing := l.state == leaseRelaying
	if syncing {
		l.to(leaseSyncing)
	}
	var out []byte
	for b := l.seg; len(b) >= protocol.HeaderLen; {
		n := frameLen(b)
		out, _, _ = l.planExtended(b[:n], out)
		b = b[n:]
	}
	out = append(out, 'S', 0, 0, 0, 4)
	l.sentSeq++
	c.Mu.Unlock()

	l.wmu.Lock()
	_, _ = l.sc.Writer.Write(out)
	err := l.sc.Writer.Flush()
	l.wmu.Unlock()

	c.Mu.Lock()
	if syncing {
		l.to(leaseRelaying)
	}
	c.broadcastIdle()
	c.Mu.Unlock()
	l.heldErr = l.heldErr[:0]
	if err != nil {
		c.Log.Debug("retry write failed", "error", err)
	}
	return true
}

// hasDescribe reports whether a run of whole messages includes a Describe.
func hasDescribe(b []byte) bool {
	for len(b) >= protocol.HeaderLen {
		if b[0] == 'D' {
			return true
		}
		b = b[frameLen(b):]
	}
	return false
}

// frameLen is the length of the whole message at the start of b.
func frameLen(b []byte) int {
	return 1 + int(binary.BigEndian.Uint32(b[1:5]))
}
