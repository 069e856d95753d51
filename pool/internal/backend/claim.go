package backend

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/jackc/puddle/v2"
)

// Claims: waiting for a server without a goroutine.
//
// A client session on an event loop that finds no idle server does not block a goroutine
// in puddle's Acquire: it files a Claim and returns, and the loop goes on with other
// sessions. Whoever gives a server back hands it to the oldest claim directly (it is never
// idle in between, so no newcomer takes it first), and the claim's Ready runs the session
// again. This is how PgBouncer hands a released server to the next waiting client inside
// its loop.
//
// Claims are taken only while the pool is full, with nothing idle and no connection
// being opened: then every server the claim can get comes back through Release, and
// nothing is lost. A server closed instead of given back (an error, server_lifetime,
// RECONNECT) makes room for a new connection: it wakes the oldest claim with Retry set,
// and that session opens or waits for one as a goroutine, through Acquire. A claim ends
// too when the caller cancels it (query_wait_timeout, KILL_CLIENT) or the pool closes
// (Err is puddle.ErrClosedPool).
//
// Sessions waiting as goroutines, in Acquire, are not passed over: while some wait, a
// given-back server goes to them and to the claims in turn.

// Claim is one wait for a server, kept by the session that waits (filing one allocates
// nothing). Ready is set once, by the owner, and called when the claim ends, with Res,
// Retry or Err set; it must not block.
type Claim struct {
	Ready func()

	// Res is the server handed over; Retry asks the owner to try again as a goroutine;
	// Err is why the wait failed. Read by the owner after Ready.
	Res   *puddle.Resource[*Conn]
	Retry bool
	Err   error

	prev, next *Claim
	queued     bool
}

// claims is a pool's queue of claims, oldest first.
type claims struct {
	mu         sync.Mutex
	head, tail *Claim
	n          atomic.Int32 // queued claims, read without mu
	closed     bool
	// toClaim is whether the last server handed over while goroutines also waited went
	// to a claim: the next goes to the goroutines.
	toClaim bool
	// goWaiting counts sessions waiting in puddle's Acquire.
	goWaiting atomic.Int32
	// handoffs counts servers handed to claims, for Stat's Acquires.
	handoffs atomic.Int64
}

func (q *claims) pushLocked(cl *Claim) {
	cl.prev, cl.next, cl.queued = q.tail, nil, true
	if q.tail != nil {
		q.tail.next = cl
	} else {
		q.head = cl
	}
	q.tail = cl
	q.n.Add(1)
}

func (q *claims) removeLocked(cl *Claim) {
	if cl.prev != nil {
		cl.prev.next = cl.next
	} else {
		q.head = cl.next
	}
	if cl.next != nil {
		cl.next.prev = cl.prev
	} else {
		q.tail = cl.prev
	}
	cl.prev, cl.next, cl.queued = nil, nil, false
	q.n.Add(-1)
}

// popLocked takes the oldest claim, or nil.
func (q *claims) popLocked() *Claim {
	cl := q.head
	if cl != nil {
		q.removeLocked(cl)
	}
	return cl
}

// File files cl, unless a server can be had at once or a claim would not be answered.
// It returns:
//   - a usable idle server, taken: the caller goes on with it, and cl is not filed;
//   - filed true: cl is queued and its Ready will be called (maybe before File returns,
//     on another goroutine); the caller must not touch what Ready resumes;
//   - neither: the pool is not full, or is opening a connection, or has a reserve, or
//     lends round robin, or was made without PoolConfig.Claims; the caller waits in
//     Acquire.
//
// An error is returned when the pool is closed.
func (bp *Pool) File(ctx context.Context, cl *Claim) (res *puddle.Resource[*Conn], filed bool, err error) {
	if !bp.filing() {
		return nil, false, nil
	}
	cl.Res, cl.Retry, cl.Err = nil, false, nil
	q := &bp.claims
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, false, puddle.ErrClosedPool
		}
		st := bp.p.Stat()
		if st.IdleResources() > 0 {
			if res, err := bp.p.TryAcquire(ctx); err == nil {
				q.mu.Unlock()
				if !bp.usable(ctx, res) {
					bp.destroy(res)
					continue
				}
				return res, false, nil
			}
			// The idle server is promised to a session waiting in Acquire (Release handed
			// it that session's turn): wait for the next one as a claim. As a goroutine,
			// this session would make the next server given back the goroutines' turn
			// too, and so on: under load, waits that never go back to the loop.
		}
		if st.TotalResources() < st.MaxResources() || st.ConstructingResources() > 0 {
			q.mu.Unlock()
			return nil, false, nil
		}
		q.pushLocked(cl)
		q.mu.Unlock()
		return nil, true, nil
	}
}

// Cancel takes cl out of the queue, and reports whether it was still there: then its
// Ready will not be called, and the caller resumes the session itself.
func (bp *Pool) Cancel(cl *Claim) bool {
	q := &bp.claims
	q.mu.Lock()
	defer q.mu.Unlock()
	if !cl.queued {
		return false
	}
	q.removeLocked(cl)
	return true
}

// giveBack returns res to puddle, or hands it to the oldest claim.
func (bp *Pool) giveBack(res *puddle.Resource[*Conn]) {
	q := &bp.claims
	if q.n.Load() == 0 && !bp.filing() {
		res.Release()
		return
	}
	q.mu.Lock()
	cl := q.head
	if cl != nil && q.goWaiting.Load() > 0 {
		if q.toClaim {
			cl = nil // the goroutines' turn
		}
		q.toClaim = cl != nil
	}
	if cl == nil {
		res.Release()
		q.mu.Unlock()
		return
	}
	q.removeLocked(cl)
	q.mu.Unlock()
	q.handoffs.Add(1)
	cl.Res = res
	cl.Ready()
}

// filing reports whether claims may be filed at all (see File): when not, giveBack need
// not look at the queue under its lock.
func (bp *Pool) filing() bool { return bp.reserve == nil && !bp.roundRobin && bp.claimsOn }

// destroy closes res, and wakes the oldest claim to try again: there is room for a new
// connection once puddle has counted res out.
func (bp *Pool) destroy(res *puddle.Resource[*Conn]) {
	res.Destroy()
	bp.retryOne()
}

// retryOne wakes the oldest claim, if any, to wait as a goroutine instead.
func (bp *Pool) retryOne() {
	q := &bp.claims
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	cl := q.popLocked()
	q.mu.Unlock()
	if cl != nil {
		cl.Retry = true
		cl.Ready()
	}
}

// sweepClaims is maintenance's look at the claims: a server left idle, or room for a new
// connection, while claims wait (a connection opened in the background for a goroutine
// that took another meanwhile) wakes the oldest to try again.
func (bp *Pool) sweepClaims() {
	if bp.claims.n.Load() == 0 {
		return
	}
	st := bp.p.Stat()
	if st.IdleResources() > 0 || st.TotalResources() < st.MaxResources() {
		bp.retryOne()
	}
}

// closeClaims fails every claim with puddle.ErrClosedPool, and files no more: Close waits
// for the servers lent, and those must go back to puddle, not to a claim.
func (bp *Pool) closeClaims() { bp.EndClaims(puddle.ErrClosedPool) }

// EndClaims ends every claim with err, and files no more (File returns
// puddle.ErrClosedPool): for Close, and for a shutdown that stops waiting for its clients,
// as the end of its context ends goroutines' waits.
func (bp *Pool) EndClaims(err error) {
	q := &bp.claims
	q.mu.Lock()
	q.closed = true
	var woken []*Claim
	for cl := q.popLocked(); cl != nil; cl = q.popLocked() {
		woken = append(woken, cl)
	}
	q.mu.Unlock()
	for _, cl := range woken {
		cl.Err = err
		cl.Ready()
	}
}
