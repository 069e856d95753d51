package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/puddle/v2"
)

// noWaitKey marks the context of a connection that maintenance opens (min_pool_size): it
// takes a free slot of the pool's limits or none, and never waits for one.
type noWaitKey struct{}

// errLimitFull is what maintenance gets when a limit has no free slot.
var errLimitFull = errors.New("a connection limit is reached")

// takeSlots takes a slot of each of the pool's limits for a connection about to open,
// waiting for them within the limit wait (query_wait_timeout).
func (bp *Pool) takeSlots(ctx context.Context) error {
	noWait := ctx.Value(noWaitKey{}) != nil
	if !noWait && bp.limitWait > 0 && len(bp.limits) > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bp.limitWait)
		defer cancel()
	}
	for i, l := range bp.limits {
		var err error
		switch {
		case noWait && !l.TryAcquire():
			err = errLimitFull
		case !noWait:
			if err = l.Acquire(ctx, bp); err != nil {
				err = fmt.Errorf("waiting for a server connection slot (max_db_connections or max_user_connections %d): %w", l.Max(), err)
			}
		}
		if err != nil {
			for _, l := range bp.limits[:i] {
				l.Release()
			}
			return err
		}
	}
	return nil
}

// giveSlots gives back the slots of a connection that closed or failed to open.
func (bp *Pool) giveSlots() {
	for _, l := range bp.limits {
		l.Release()
	}
}

// EvictIdle closes the connection idle longest, if any is idle, so that another pool
// sharing a limit can open one; it reports whether it closed one.
func (bp *Pool) EvictIdle() bool {
	var idle []*puddle.Resource[*Conn]
	for _, p := range bp.puddles() {
		idle = append(idle, p.AcquireAllIdle()...)
	}
	if len(idle) == 0 {
		return false
	}
	oldest := slices.MaxFunc(idle, func(a, b *puddle.Resource[*Conn]) int { return cmp.Compare(a.IdleDuration(), b.IdleDuration()) })
	for _, res := range idle {
		if res == oldest {
			res.Destroy()
		} else {
			res.ReleaseUnused()
		}
	}
	return true
}
