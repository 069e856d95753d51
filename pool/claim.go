package pool

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/reactor"
	"github.com/cmlite/cmpool/protocol"
)

// Waiting for a server on an event loop.
//
// A session that runs on an event loop and finds no idle server files a claim with the
// pool (backend.Claim) and returns, and the loop goes on with other sessions: the wait
// holds no goroutine and detaches no loop worker. A server given back is handed to the
// oldest claim, and the session goes on, on its client socket's loop, in afterClaim: with
// the server, or with the error that ended the wait. query_wait_timeout (a timer kept by
// the session) and KILL_CLIENT end a wait by taking the claim back from the pool; the
// pool's close ends them all. Whatever the claim cannot serve (a pool that is not full,
// a reserve, a server closed instead of given back) makes the session wait as a
// goroutine, as off the loops (waitServer).

// claimState is a session's claim, in its onLoop: allocated on the session's first wait
// for a server as a claim (claimsOf), so that a client that never waited holds none.
type claimState struct {
	acq      acquireState // the request waiting, while filed
	claim    backend.Claim
	waitA    reactor.Waiter // runs afterClaim on the loop
	bp       atomic.Pointer[backendPool]
	deadline atomic.Int64 // of the wait under way (nanotime); 0 when none
	timer    *time.Timer
	kill     context.CancelFunc // bound once: KILL_CLIENT is handed a pointer to it
	expireFn func()
}

// claimsOf returns c's claim state, made and its callbacks bound on first use. Only c's
// own goroutine calls it, before a claim is filed; the callbacks run after.
func (c *clientSession) claimsOf() *claimState {
	lp := c.lp
	if cs := lp.claims; cs != nil {
		return cs
	}
	cs := &claimState{}
	cs.waitA.Task = (*acquireResume)(c)
	cs.claim.Ready = func() { lp.ep.Post(&cs.waitA) }
	cs.kill = func() { c.cancelClaim(context.Canceled) }
	cs.expireFn = c.claimExpired
	lp.claims = cs
	return cs
}

// acquireResume runs a session whose claim ended.
type acquireResume clientSession

func (r *acquireResume) RunReady(w *reactor.Worker) {
	(*clientSession)(r).resumed(w, resumeAcquire)
}

// fileClaim waits for a server of bp as a claim when c runs on an event loop. It returns a
// server when one could be had at once; filed when c is suspended (its claim's Ready
// runs it again, maybe already); neither when c must wait as a goroutine (waitServer).
func (c *clientSession) fileClaim(ctx context.Context, a *acquireState, bp *backendPool) (*puddle.Resource[*backend.Conn], bool, error) {
	lp := c.lp
	if lp == nil || lp.w.Load() == nil || !lp.ep.Registered() {
		return nil, false, nil
	}
	cs := c.claimsOf()
	a.bp = bp
	cs.bp.Store(bp)
	a.start = lease.Nanotime()
	c.waitingSince.Store(a.start)
	if t := c.srv.conf().QueryWaitTimeout; t > 0 {
		cs.deadline.Store(a.start + int64(t))
		if cs.timer == nil {
			cs.timer = time.AfterFunc(t, cs.expireFn)
		} else {
			cs.timer.Reset(t)
		}
	}
	c.killableWait(&cs.kill)
	// A first wait's request is the caller's; a retried one (afterClaim) is cs.acq already.
	first := a != &cs.acq
	if first {
		cs.acq = *a // afterClaim goes on from it, maybe before File returns
	}
	w := lp.w.Swap(nil)
	res, filed, err := bp.File(ctx, &cs.claim)
	if filed {
		c.srv.claimWaits.Add(1)
		if c.killed.Load() {
			cs.kill() // killed before the claim was filed: KILL_CLIENT found nothing to end
		}
		return nil, true, nil
	}
	lp.w.Store(w)
	if first {
		cs.acq.msg, cs.acq.bp, cs.acq.rs = nil, nil, nil // an idle session must not hold its read buffer
	}
	c.stopClaimWait()
	return res, false, err
}

// stopClaimWait undoes fileClaim's bookkeeping, when its wait ends.
func (c *clientSession) stopClaimWait() {
	cs := c.lp.claims
	cs.deadline.Store(0)
	if cs.timer != nil {
		cs.timer.Stop()
	}
	c.killableWait(nil)
	c.waitingSince.Store(0)
}

// claimEnded is the end of a wait filed as a claim, back on the session's goroutine.
func (c *clientSession) claimEnded(a *acquireState, handed bool) {
	c.stopClaimWait()
	if handed {
		c.srv.claimHanded.Add(1)
	} else {
		c.srv.claimOther.Add(1)
	}
	c.srv.noteWait(c.Database, c.User, a.bp, time.Duration(lease.Nanotime()-a.start))
}

// claimExpired is the claim timer's: query_wait_timeout ends the wait under way. A timer
// of an earlier wait that fires late finds no wait, or one whose deadline is ahead.
func (c *clientSession) claimExpired() {
	if d := c.lp.claims.deadline.Load(); d == 0 || lease.Nanotime() < d {
		return
	}
	c.cancelClaim(context.DeadlineExceeded)
}

// cancelClaim ends c's wait with err, if its claim is still queued; the session then
// goes on on its loop, as if it had been handed a server.
func (c *clientSession) cancelClaim(err error) {
	lp, cs := c.lp, c.lp.claims
	if bp := cs.bp.Load(); bp != nil && bp.Cancel(&cs.claim) {
		cs.claim.Err = err
		lp.ep.Post(&cs.waitA)
	}
}

// afterClaim goes on with the request whose wait for a server ended: it takes the server
// (or tries again), and forwards the request, or answers it with the error.
func (c *clientSession) afterClaim(ctx context.Context) error {
	a := &c.lp.claims.acq
	l, err := c.acquireFrom(ctx, a, true)
	if err == lease.ErrSuspended {
		return err
	}
	fr, msg := a.fr, a.msg
	a.msg, a.bp, a.rs = nil, nil, nil
	if err != nil {
		return c.acquireFailed(fr, err)
	}
	c.Account(l, fr.Type)
	return c.Forward(l, fr.Type, msg, protocol.HeaderLen+fr.BodyLen)
}
