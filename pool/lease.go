package pool

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/router"
)

// lease is one loan of a server connection to a client.
type lease struct {
	// c is the client the server is lent to; set when the lease is made, never changed.
	c *clientSession
	// state is where the lease is in its life (leasestate.go). Guarded by
	// clientSession.mu; changed only by to.
	state leaseState
	pool  *backendPool
	res   *puddle.Resource[*serverConn]
	sc    *serverConn
	// replica is the index in rs of the replica the lease reads from, or -1 on the
	// primary; rs is the replica set in force when the lease began.
	replica int
	rs      *router.ReplicaSet
	// needLSN: the lease may have written on the primary; its commit is noted when it
	// ends, for read-your-writes.
	needLSN bool
	// queryTimeout is twice query_timeout (a cancel request went out at query_timeout):
	// while requests are outstanding the server's read deadline is this far past the
	// last one sent. Zero means none.
	queryTimeout time.Duration
	// Guarded by clientSession.mu:
	pending     int    // Query/Sync/FunctionCall sent whose ReadyForQuery has not come back
	unsynced    bool   // extended-protocol messages sent since the last Sync
	sentSeq     uint64 // Query/Sync/FunctionCall messages sent
	executed    bool   // a Query, FunctionCall or Execute was sent: something may have written
	recvSeq     uint64 // ReadyForQuery messages received
	parses      inflightQueue
	closes      inflightQueue
	bound       []boundStmt // named statements bound in Sync segments not yet answered
	track       []string    // parameters changed by this lease's statements, to read back
	resetNeeded bool        // session-bound features were used: DISCARD ALL before reuse
	tempCheck   bool        // temporary objects were mentioned: check for them before reuse

	// restoreSeg is the Sync segment after which the startup values of the parameters in
	// restore are set again (restoreStartup); 0 if none. restoreFailed: that segment
	// failed, so nothing was reset. Guarded by clientSession.mu.
	restoreSeg    uint64
	restore       []string
	restoreFailed bool

	// The current Sync segment, kept for a retry (retry.go). Guarded by mu.
	seg                     []byte
	segOK, segDone, retried bool
	// Relay-owned: whether the segment being answered has sent the client anything, and
	// an error held back for a retry.
	answered    bool
	heldErr     []byte
	toPrimary   bool   // the held error is a replica's 25006: replay on the primary
	forced      bool   // the client chose the replica: no 25006 safety net
	heldReplies []byte // a replica's describing replies, held until the first row or end

	heldStatus [][2]string // relay-owned: ParameterStatus held until startup values are restored

	// wmu is held while the client goroutine writes to the server, so the relay can wait
	// for a write in progress before giving the server to someone else; and while the
	// relay writes cmpool's own messages (a retry, a replay, the ROLLBACK of
	// refuseTransactionBlock), so that nothing of the client's is interleaved. It is
	// taken after clientSession.wmu, never under clientSession.mu.
	wmu sync.Mutex
	// done is closed when the relay exits. It is made when a relay goroutine starts; a
	// lease relayed whole on the client goroutine gets relayDone.
	done chan struct{}

	// Statistics: nanotime of the oldest unanswered request and of the transaction's
	// first request (0: none; guarded by clientSession.mu); bytes from the client
	// (client goroutine) and to it (relay goroutine) not yet added to the pool's counters.
	qStart, xStart int64
	recvBytes      atomic.Int64
	sentBytes      int64
	// queryTimer cancels a request running past query_timeout; nil until first armed.
	queryTimer *time.Timer
	// hiddenBegin: a deferred BEGIN was sent first on this lease and its replies are
	// still due; the relay drops them. Guarded by clientSession.mu.
	hiddenBegin bool
	// ready is what the last ReadyForQuery ended, not yet reported to the Observer
	// (noteReady, reportReady). Whoever relays the lease owns it.
	ready readyNote
	// untracked: a statement may have changed settings it does not name (set_config, DO,
	// …); opaque: custom ones whose names it does not give either; settingNames and
	// settingFuncs are the custom parameters and the user-defined functions the
	// statements name. All settings are read back when the lease ends if
	// any of these may have changed some (untrackedChanges). Guarded by clientSession.mu.
	untracked, opaque          bool
	settingNames, settingFuncs []string
}

// newLease returns an empty lease for the client's next transaction. That is the previous
// lease itself, emptied, when nothing can refer to it any more: it was relayed on the
// client goroutine only (no relay goroutine, which may still be exiting), it ended cleanly
// (finishLease returned its server, after its cancels in flight were answered), and it never
// armed query_timeout (whose timer may still fire). Then a transaction allocates nothing.
// Its buffers are kept; reuseBuffers has nothing to do.
func (c *clientSession) newLease() *lease {
	p := c.prevLease
	// done first: a lease that never had a relay goroutine was only ever touched by this
	// goroutine and by others under c.mu.
	if p == nil || p.done != relayDone || p.queryTimer != nil || p == c.unrelayed {
		return &lease{c: c}
	}
	c.mu.Lock()
	reusable := p != c.lease && p.state == leaseReleased
	c.mu.Unlock()
	if !reusable {
		return &lease{c: c}
	}
	c.prevLease = nil
	seg, heldReplies, heldErr := p.seg[:0], p.heldReplies[:0], p.heldErr[:0]
	if cap(seg) > maxScratch {
		seg = nil
	}
	if cap(heldReplies) > maxScratch {
		heldReplies = nil
	}
	if cap(heldErr) > maxScratch {
		heldErr = nil
	}
	bound, parses, closes := reuseSlice(p.bound), reuseSlice(p.parses.items), reuseSlice(p.closes.items)
	track := reuseSlice(p.track)
	*p = lease{c: c}
	p.seg, p.heldReplies, p.heldErr = seg, heldReplies, heldErr
	p.bound, p.parses.items, p.closes.items, p.track = bound, parses, closes, track
	return p
}

// reuseBuffers gives l the retry and reply buffers of the previous lease if its relay has
// exited (nothing touches them after that), so that they are not grown again for every
// transaction. Buffers grown past maxScratch are left to the collector.
func (c *clientSession) reuseBuffers(l *lease) {
	p := c.prevLease
	c.prevLease = l
	if p == nil {
		return
	}
	select {
	case <-p.done:
	default:
		return
	}
	if cap(p.seg) <= maxScratch {
		l.seg = p.seg[:0]
	}
	if cap(p.heldReplies) <= maxScratch {
		l.heldReplies = p.heldReplies[:0]
	}
	if cap(p.heldErr) <= maxScratch {
		l.heldErr = p.heldErr[:0]
	}
	l.bound = reuseSlice(p.bound)
	l.parses.items = reuseSlice(p.parses.items)
	l.closes.items = reuseSlice(p.closes.items)
	p.seg, p.heldReplies, p.heldErr, p.bound, p.parses.items, p.closes.items = nil, nil, nil, nil, nil, nil
}

// reuseSlice empties s for reuse, dropping the pointers it held.
func reuseSlice[T any](s []T) []T {
	if cap(s) > maxScratch/64 {
		return nil
	}
	s = s[:cap(s)]
	clear(s)
	return s[:0]
}
