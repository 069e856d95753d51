package pool

import (
	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/backend"
)

// Waiting for a server as a goroutine, with a claim.
//
// A session on a goroutine that finds no idle server files a claim too (backend.Claim,
// as on the event loops, claim.go), when the pool takes one: a server given back is
// handed to the oldest claim directly, and the claim's Ready wakes the goroutine by a
// channel the session keeps for all its waits. Where puddle's Acquire made a channel per
// wait, selected on it under puddle's semaphore lock and closed it at the release (at
// 1,000 clients and a pool of 20 that was 6% of cmpool's CPU, docs/benchmarks/analysis.md),
// a wait now costs one send and one receive on a channel made once. query_wait_timeout
// and KILL_CLIENT end it through the waiter, as they end Acquire; what a claim cannot
// serve (a pool that is not full, a reserve, server_round_robin, a server closed instead
// of given back) waits in Acquire, as before.

// goClaim is a session's claim for its waits as a goroutine; made at its first one.
type goClaim struct {
	claim backend.Claim
	ready chan struct{} // the claim's Ready: one signal per claim that ends
}

// goClaimOf returns c's goroutine claim, made on first use; only c's goroutine uses it.
func (c *clientSession) goClaimOf() *goClaim {
	if g := c.gclaim; g != nil {
		return g
	}
	g := &goClaim{ready: make(chan struct{}, 1)}
	g.claim.Ready = func() { g.ready <- struct{}{} }
	c.gclaim = g
	return g
}

// claimOrAcquire waits for a server of bp under w: as a claim when bp files one, else in
// Acquire. A claim's Ready is called once per filing, and its signal is always received
// here, so the channel is empty when the next wait begins.
func (c *clientSession) claimOrAcquire(w *waiter, bp *backendPool) (*puddle.Resource[*backend.Conn], error) {
	g := c.goClaimOf()
	res, filed, err := bp.File(w, &g.claim)
	if res != nil || err != nil {
		return res, err
	}
	if !filed {
		return bp.Acquire(w)
	}
	select {
	case <-g.ready:
	case <-w.Done():
		if bp.Cancel(&g.claim) {
			return nil, w.Err()
		}
		<-g.ready // the claim ended meanwhile: what it ended with stands
	}
	cl := &g.claim
	res, err, retry := cl.Res, cl.Err, cl.Retry
	cl.Res, cl.Err, cl.Retry = nil, nil, false
	if retry {
		return bp.Acquire(w) // room for a new connection: open or wait for one
	}
	return res, err
}
