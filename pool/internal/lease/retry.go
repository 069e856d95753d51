package lease

import (
	"bytes"
	"encoding/binary"

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
	if !stale && !readOnly || l.answered {
		return false
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if !l.segOK || !l.segDone || l.retried || l.unsynced || l.sentSeq != l.recvSeq+1 || stale && !hasDescribe(l.seg) {
		return false
	}
	l.retried = true
	l.toPrimary = readOnly
	l.heldErr = append(l.heldErr[:0], msg...)
	return true
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
	if status != 'I' || l.unsynced || l.sentSeq != l.recvSeq+1 || l.state != leaseRelaying {
		c.Mu.Unlock()
		return false
	}
	l.recvSeq++
	l.pending = 0
	l.to(leaseSyncing) // the client goroutine waits for the new lease
	seg := bytes.Clone(l.seg)
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
		c.Idle.Broadcast()
		c.Mu.Unlock()
		return true
	}
	nl := &Lease{c: c, pool: primary, res: res, sc: res.Value(), done: make(chan struct{}), segDone: true, replica: -1, needLSN: true,
		queryTimeout: 2 * c.Host.Config().QueryTimeout}
	var out []byte
	c.Mu.Lock()
	if seg[0] == 'Q' {
		nl.account('Q')
		out = seg
	} else {
		for b := seg; len(b) >= protocol.HeaderLen; {
			n := frameLen(b)
			nl.account(b[0])
			out, _, _ = nl.planExtended(b[:n], out)
			b = b[n:]
		}
		nl.account('S')
		out = append(out, 'S', 0, 0, 0, 4)
	}
	nl.to(leaseRelaying)
	c.Lease = nl
	c.Idle.Broadcast()
	c.Mu.Unlock()
	c.Host.ReadOnlyReplayed()

	nl.wmu.Lock()
	_, _ = nl.sc.Writer.Write(out)
	if err := nl.sc.Writer.Flush(); err != nil {
		c.Log.Debug("replay write failed", "error", err)
	}
	nl.wmu.Unlock()
	go nl.relay()
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
	c.Idle.Broadcast()
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
