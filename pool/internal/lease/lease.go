package lease

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Lease is one loan of a server connection to a client: from the request that needed a
// server to the ReadyForQuery that ends it (or the client's exit, or a failure). Its life
// is the state machine of leasestate.go; giveBack is the one place its server leaves it.
//
// Its fields are grouped by owner:
//   - set when the Lease is made, before any other goroutine sees it, and then only read;
//   - guarded by clientSession.mu (the client goroutine, the relay, cancel requests,
//     query_timeout and a drain all read or change them);
//   - the relay's: whoever relays the Lease (the client goroutine inline, or the relay
//     goroutine; never both, and done orders the hand-over) reads and writes them with no
//     lock;
//   - synchronisation: wmu, done, and the atomic recvBytes.
//
// Locks: a Lease's wmu is taken after clientConn.wmu and before clientSession.mu,
// never under it (see clientConn.wmu for the whole order).
type Lease struct {
	// Set when the lease is made; read only after.

	// c is the client the server is lent to.
	c    *Client
	pool *backend.Pool
	res  *puddle.Resource[*backend.Conn]
	sc   *backend.Conn
	// replica is the index in rs of the replica the lease reads from, or -1 on the
	// primary; rs is the replica set in force when the lease began. forced: the client
	// chose the replica, so a write refused there (25006) is not replayed on the primary.
	replica int
	rs      *router.ReplicaSet
	forced  bool
	// abortWith, when set (under c.mu), is what the client is told when the relay's read
	// of the server times out: the lease was aborted (AbortRunning).
	abortWith *protocol.Error
	// queryTimeout is twice query_timeout (a cancel request went out at query_timeout):
	// while requests are outstanding the server's read deadline is this far past the
	// last one sent. Zero means none.
	queryTimeout time.Duration

	// Guarded by clientSession.mu.

	// state is where the lease is in its life; changed only by to.
	state leaseState
	// needLSN: the lease may have written on the primary; its commit is noted when it
	// ends, for read-your-writes. Set when the lease is made; endsLease clears it when
	// nothing ran.
	needLSN     bool
	pending     int       // Query/Sync/FunctionCall sent whose ReadyForQuery has not come back
	unsynced    bool      // extended-protocol messages sent since the last Sync
	sentSeq     uint64    // Query/Sync/FunctionCall messages sent
	executed    bool      // a Query, FunctionCall or Execute was sent: something may have written
	recvSeq     uint64    // ReadyForQuery messages received
	stmts       stmt.Plan // prepared statements: replies due, statements bound
	track       []string  // parameters changed by this lease's statements, to read back
	resetNeeded bool      // session-bound features were used: DISCARD ALL before reuse
	tempCheck   bool      // temporary objects were mentioned: check for them before reuse
	// Session pinning (pin.go): pinned lists the session state that keeps the server
	// with the client (nil: none); pinCandidate: a statement sent since the last check
	// may have left or released some; pinSlot: the lease holds one of its pool's
	// max_pinned slots.
	pinned       []string
	pinCandidate bool
	pinSlot      bool
	// hiddenBegin: a deferred BEGIN was sent first on this lease and its replies are
	// still due; the relay drops them.
	hiddenBegin bool
	// awaited: send flushed the request and waited for its reply (FlushAwaitingReply),
	// having moved the lease to relaying first; relayAfter relays it inline.
	awaited bool
	// sqlStmts: the replies due to SQL-level PREPARE and EXECUTE rewritten on this lease
	// (sqlprepare.go).
	sqlStmts stmt.SQLPlan
	// restoreSeg is the Sync segment after which the startup values of the parameters in
	// restore are set again (restoreStartup); 0 if none. restoreFailed: that segment
	// failed, so nothing was reset.
	restoreSeg    uint64
	restore       []string
	restoreFailed bool
	// The current Sync segment, kept for a retry (retry.go).
	seg                     []byte
	segOK, segDone, retried bool
	// untracked: a statement may have changed settings it does not name (set_config, DO,
	// …); opaque: custom ones whose names it does not give either; settingNames and
	// settingFuncs are the custom parameters and the user-defined functions the
	// statements name. All settings are read back when the lease ends if
	// any of these may have changed some (untrackedChanges).
	untracked, opaque          bool
	settingNames, settingFuncs []string
	// Statistics: nanotime of the oldest unanswered request and of the transaction's
	// first request (0: none); readyAt, of the last ReadyForQuery (noteReady).
	qStart, xStart, readyAt int64
	// queryTimer cancels a request running past query_timeout; nil until first armed
	// (armQueryTimer, by the client goroutine). Stopped without the lock, once the lease
	// owes nothing or is destroyed.
	queryTimer *time.Timer

	// The relay's.

	// answered: the segment being answered has sent the client something. heldErr is an
	// error held back for a retry; toPrimary: it is a replica's 25006, to be replayed on
	// the primary; away: it says the replica is going away (57P01…), and the request is
	// replayed elsewhere once its connection ends (replayElsewhere).
	answered  bool
	heldErr   []byte
	toPrimary bool
	away      bool
	// heldReplies are the replies to a replica's replayable read, held until its
	// ReadyForQuery (relayOne).
	heldReplies []byte
	// heldStatus are ParameterStatus messages held until startup values are restored.
	heldStatus [][2]string
	// ready is what the last ReadyForQuery ended, not yet reported to the Observer
	// (noteReady, reportReady).
	ready Report
	// sentBytes are the bytes relayed to the client not yet added to the pool's counters.
	sentBytes int64

	// Synchronisation.

	// wmu is held while the client goroutine writes to the server, so the relay can wait
	// for a write in progress before giving the server to someone else; and while the
	// relay writes cmpool's own messages (a retry, a replay, the ROLLBACK of
	// refuseTransactionBlock), so that nothing of the client's is interleaved.
	wmu sync.Mutex
	// done is closed when the relay exits: the wait for it is how another goroutine
	// knows the relay's fields and the server's reader are free. The client goroutine
	// sets it before the relay starts: made for a relay goroutine, or relayDone for a
	// lease relayed whole on the client goroutine. nil while nothing has relayed yet.
	done chan struct{}
	// recvBytes are the bytes from the client not yet added to the pool's counters: the
	// client goroutine adds, the relay takes them.
	recvBytes atomic.Int64
	// pinWatch is pinCandidate, for the relay to read without c.mu at each
	// ReadyForQuery.
	pinWatch atomic.Bool
}

// newLease returns an empty lease for the client's next transaction. That is the previous
// lease itself, emptied, when nothing can refer to it any more: it was relayed on the
// client goroutine only (no relay goroutine, which may still be exiting), it ended cleanly
// (finishLease returned its server, after its cancels in flight were answered), and it never
// armed query_timeout (whose timer may still fire). Then a transaction allocates nothing.
// Its buffers are kept; takeBuffers has nothing to do.
func (c *Client) newLease() *Lease {
	p := c.prevLease
	// done first: a lease that never had a relay goroutine was only ever touched by this
	// goroutine and by others under c.mu.
	if p == nil || p.done != relayDone || p.queryTimer != nil || p == c.unrelayed {
		return &Lease{c: c}
	}
	c.Mu.Lock()
	reusable := p != c.Lease && p.state == leaseReleased
	c.Mu.Unlock()
	if !reusable {
		return &Lease{c: c}
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
	var stmts stmt.Plan
	stmts.TakeBuffers(&p.stmts)
	track := reuseSlice(p.track)
	*p = Lease{c: c}
	p.seg, p.heldReplies, p.heldErr = seg, heldReplies, heldErr
	p.stmts, p.track = stmts, track
	return p
}

// takeBuffers gives l the retry and reply buffers of p, the client's previous lease, if
// its relay has exited (nothing touches them after that), so that they are not grown
// again for every transaction. Buffers grown past maxScratch are left to the collector.
func (l *Lease) takeBuffers(p *Lease) {
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
	l.stmts.TakeBuffers(&p.stmts)
	p.seg, p.heldReplies, p.heldErr = nil, nil, nil
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

// Route is where a lease's server is: on a replica of a replica set, or on the primary.
type Route struct {
	// Replica is the index in RS of the replica, or -1 on the primary. RS is the replica
	// set in force when the lease began (nil without replicas).
	Replica int
	RS      *router.ReplicaSet
	// Forced: the client chose the replica, so a write refused there (25006) is not
	// replayed on the primary.
	Forced bool
	// NeedLSN: the lease may write on the primary; its commit is noted when it ends, for
	// read-your-writes.
	NeedLSN bool
}

// Start makes res, taken from bp, the client's server, on a new lease. Its replies are
// relayed once requests are sent (relayAfter). A replica's slot in r.RS is the lease's
// to give back.
func (c *Client) Start(bp *backend.Pool, res *puddle.Resource[*backend.Conn], r Route) *Lease {
	l := c.newLease()
	l.replica, l.rs, l.forced, l.needLSN = r.Replica, r.RS, r.Forced, r.NeedLSN
	l.start(bp, res)
	return l
}

// start makes res the client's server, on l (its routing fields set).
func (l *Lease) start(bp *backend.Pool, res *puddle.Resource[*backend.Conn]) {
	c := l.c
	l.pool, l.res, l.sc = bp, res, res.Value()
	l.sc.Linked.Store(c.ID)
	l.sc.SetBlockHook(c.Host.BlockHook())
	l.segDone = true
	l.takeBuffers(c.prevLease)
	c.prevLease = l
	l.queryTimeout = 2 * c.Host.Config().QueryTimeout
	c.Mu.Lock()
	l.to(leaseUnrelayed)
	c.Lease = l
	c.Mu.Unlock()
	c.unrelayed = l
}

// Server is l's server connection.
func (l *Lease) Server() *backend.Conn { return l.sc }
