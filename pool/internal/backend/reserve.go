package backend

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/puddle/v2"
)

// reservePoll is how often a client past reserve_pool_timeout, with the reserve full,
// looks for an idle reserve connection while it waits for the pool.
const reservePoll = 50 * time.Millisecond

// puddles are the pool's puddle pools: the pool proper and its reserve, if any.
func (bp *Pool) puddles() []*puddle.Pool[*Conn] {
	if bp.reserve == nil {
		return []*puddle.Pool[*Conn]{bp.p}
	}
	return []*puddle.Pool[*Conn]{bp.p, bp.reserve}
}

// Acquire returns a server connection that looks alive, waiting for one until ctx ends.
// A client that has waited reserveTimeout may take a connection of the reserve: an idle
// one, or a new one while the reserve has room.
func (bp *Pool) Acquire(ctx context.Context) (*puddle.Resource[*Conn], error) {
	if bp.reserve == nil {
		return bp.acquireFrom(ctx, bp.p)
	}
	wctx, cancel := context.WithTimeout(ctx, bp.reserveTimeout)
	res, err := bp.acquireFrom(wctx, bp.p)
	cancel()
	if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		return res, err
	}
	for {
		if res := bp.idleReserve(ctx); res != nil {
			return res, nil
		}
		if st := bp.reserve.Stat(); st.TotalResources() < st.MaxResources() {
			return bp.acquireFrom(ctx, bp.reserve)
		}
		wctx, cancel := context.WithTimeout(ctx, reservePoll)
		res, err := bp.acquireFrom(wctx, bp.p)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return res, err
		}
	}
}

// acquireFrom takes a usable connection from p, waiting until ctx ends.
func (bp *Pool) acquireFrom(ctx context.Context, p *puddle.Pool[*Conn]) (*puddle.Resource[*Conn], error) {
	if res := bp.oldestIdle(ctx, p); res != nil {
		return res, nil
	}
	bp.claims.goWaiting.Add(1)
	defer bp.claims.goWaiting.Add(-1)
	for {
		res, err := p.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		if !bp.usable(ctx, res) {
			bp.destroy(res)
			continue
		}
		return res, nil
	}
}

// oldestIdle takes the usable connection of p idle longest, with server_round_robin;
// it returns nil without it, or when none is idle. puddle lends the connection idle
// shortest (a stack): to lend in turn, the idle ones are taken and all but the oldest put
// back.
func (bp *Pool) oldestIdle(ctx context.Context, p *puddle.Pool[*Conn]) *puddle.Resource[*Conn] {
	if !bp.roundRobin {
		return nil
	}
	for {
		idle := p.AcquireAllIdle()
		if len(idle) == 0 {
			return nil
		}
		oldest := slices.MaxFunc(idle, func(a, b *puddle.Resource[*Conn]) int { return cmp.Compare(a.IdleDuration(), b.IdleDuration()) })
		for _, res := range idle {
			if res != oldest {
				res.ReleaseUnused()
			}
		}
		if bp.usable(ctx, oldest) {
			return oldest
		}
		oldest.Destroy()
	}
}

// idleReserve takes a usable idle connection of the reserve, or returns nil.
func (bp *Pool) idleReserve(ctx context.Context) *puddle.Resource[*Conn] {
	for {
		idle := bp.reserve.AcquireAllIdle()
		if len(idle) == 0 {
			return nil
		}
		for _, res := range idle[1:] {
			res.ReleaseUnused()
		}
		if bp.usable(ctx, idle[0]) {
			return idle[0]
		}
		idle[0].Destroy()
	}
}

// usable reports whether an idle connection just taken may be lent: one idle for a while
// must not have been closed by its server, and one idle longer than checkDelay must
// answer checkQuery (server_check_query).
func (bp *Pool) usable(ctx context.Context, res *puddle.Resource[*Conn]) bool {
	idle := res.IdleDuration()
	if idle > aliveCheckAfter && !res.Value().Alive() {
		return false
	}
	if bp.checkDelay <= 0 || idle < bp.checkDelay {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, bp.checkTimeout)
	defer cancel()
	r, err := res.Value().Exec(ctx, bp.checkQuery)
	return err == nil && r.Err == nil && res.Value().TxStatus == 'I'
}

// Stat is a pool's connections, its reserve's included.
type Stat struct {
	// Open in all, idle, lent, logging in, and the most allowed.
	Total, Idle, Acquired, Constructing, Max int
	// Reserve is how many of Total are reserve connections.
	Reserve int
	// Acquires counts connections lent.
	Acquires int64
}

// Stat returns the pool's statistics.
func (bp *Pool) Stat() Stat {
	var out Stat
	for i, p := range bp.puddles() {
		st := p.Stat()
		out.Total += int(st.TotalResources())
		out.Idle += int(st.IdleResources())
		out.Acquired += int(st.AcquiredResources())
		out.Constructing += int(st.ConstructingResources())
		out.Max += int(st.MaxResources())
		out.Acquires += st.AcquireCount()
		if i == 0 {
			out.Acquires += bp.claims.handoffs.Load()
		}
		if i > 0 {
			out.Reserve = int(st.TotalResources())
		}
	}
	return out
}
