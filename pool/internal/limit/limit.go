// Package limit bounds the server connections open across several pools: PgBouncer's
// max_db_connections (a database's pools, over all its users) and max_user_connections (a
// user's pools, over all databases).
//
// A pool takes a slot from each of its limits before it opens a server connection and
// gives them back when the connection is closed. A pool that finds a limit full waits for
// a slot, in the order the waits began, and meanwhile asks the limit's pools to close an
// idle connection to make room, as PgBouncer closes idle servers of a database's other
// pools.
package limit

import (
	"context"
	"sync"
	"time"
)

// Evictor is a pool that shares a limit: EvictIdle closes one of its idle connections,
// if it has one, and reports whether it did.
type Evictor interface {
	EvictIdle() bool
}

// evictEvery is how often a waiter asks the limit's pools again for an idle connection.
const evictEvery = 100 * time.Millisecond

// Limit is a counting semaphore of server connections shared by pools.
type Limit struct {
	max int

	mu      sync.Mutex
	used    int
	waiters []chan struct{} // first come, first served
	members map[Evictor]struct{}
}

// New returns a limit of max connections; max must be positive.
func New(max int) *Limit {
	return &Limit{max: max, members: make(map[Evictor]struct{})}
}

// Max is the most connections the limit allows.
func (l *Limit) Max() int { return l.max }

// Used is how many slots are taken.
func (l *Limit) Used() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used
}

// Waiting is how many are waiting for a slot.
func (l *Limit) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}

// Join makes e one of the pools the limit may ask for an idle connection.
func (l *Limit) Join(e Evictor) {
	l.mu.Lock()
	l.members[e] = struct{}{}
	l.mu.Unlock()
}

// Leave undoes Join.
func (l *Limit) Leave(e Evictor) {
	l.mu.Lock()
	delete(l.members, e)
	l.mu.Unlock()
}

// TryAcquire takes a slot if one is free, without waiting.
func (l *Limit) TryAcquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used < l.max && len(l.waiters) == 0 {
		l.used++
		return true
	}
	return false
}

// Acquire takes a slot, waiting until one is free or ctx ends. While it waits, it asks
// the limit's pools, other than self first, to close an idle connection.
func (l *Limit) Acquire(ctx context.Context, self Evictor) error {
	l.mu.Lock()
	if l.used < l.max && len(l.waiters) == 0 {
		l.used++
		l.mu.Unlock()
		return nil
	}
	ch := make(chan struct{}, 1)
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()

	tick := time.NewTicker(evictEvery)
	defer tick.Stop()
	for {
		l.evictOne(self)
		select {
		case <-ch:
			return nil
		case <-tick.C:
		case <-ctx.Done():
			l.mu.Lock()
			for i, w := range l.waiters {
				if w == ch {
					l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
					l.mu.Unlock()
					return ctx.Err()
				}
			}
			l.mu.Unlock()
			// Release handed the slot over meanwhile: pass it on.
			<-ch
			l.Release()
			return ctx.Err()
		}
	}
}

// Release gives a slot back: to the first waiter, or to the free slots.
func (l *Limit) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiters) > 0 {
		ch := l.waiters[0]
		l.waiters = l.waiters[1:]
		ch <- struct{}{}
		return
	}
	l.used--
}

// evictOne asks the limit's pools, self last, to close one idle connection.
func (l *Limit) evictOne(self Evictor) {
	l.mu.Lock()
	others := make([]Evictor, 0, len(l.members))
	for e := range l.members {
		if e != self {
			others = append(others, e)
		}
	}
	_, selfIn := l.members[self]
	l.mu.Unlock()
	for _, e := range others {
		if e.EvictIdle() {
			return
		}
	}
	if selfIn {
		self.EvictIdle()
	}
}

// Key names a limit among a server's: the kind ("database" or "user"), its name, the
// backend (0 is the primary) and the most connections it allows, so that a reload that
// changes the bound makes a new limit for the pools made after it.
type Key struct {
	Kind    string
	Name    string
	Backend int
	Max     int
}

// Registry holds a server's limits.
type Registry struct {
	mu     sync.Mutex
	limits map[Key]*Limit
}

// Get returns the limit of k, making it on first use; nil when k.Max is not positive.
func (r *Registry) Get(k Key) *Limit {
	if k.Max <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limits == nil {
		r.limits = make(map[Key]*Limit)
	}
	l := r.limits[k]
	if l == nil {
		l = New(k.Max)
		r.limits[k] = l
	}
	return l
}
