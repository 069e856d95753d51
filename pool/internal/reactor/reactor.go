// Package reactor runs client sessions from a few event loops instead of a goroutine each.
//
// A Set is one event loop per usable CPU, each a goroutine waiting on its own epoll set.
// The sockets cmpool relays between (clients, and the servers they lease) are registered
// once, edge-triggered, as Endpoints. Code that has nothing to do until a socket has data
// (a client between requests, a lease waiting for its server's reply) calls Wait with a
// Waiter, and its goroutine returns. When the socket becomes readable, the loop that owns
// the socket runs the Waiter there, on the loop's own goroutine: no goroutine is woken,
// and no read is made only to learn that the socket is empty.
//
// The loop must not be held by code that blocks. Whatever may block calls Detach on the
// Worker it runs on (the raw socket I/O does so before it waits for the runtime's poller,
// the pool before it waits for a server): the loop goes on with a new goroutine, and the
// old one finishes what it runs as an ordinary goroutine. A watchdog detaches a worker
// that stays on one event for longer than a few milliseconds anyway, so that a wait
// nobody announced only delays the loop's other sockets, and never deadlocks them.
//
// Endpoint state: pend is set by the loop when the socket signals data, and cleared by the
// reader before each read; drained is the reader's own note that its last read found the
// socket empty (a short read or EAGAIN). Wait suspends only when both say that the socket
// holds nothing unread: with an edge-triggered registration, a later arrival signals again.
// A hang-up is the exception (a short read leaves the end of the stream to read, and it is
// signalled once): once signalled, Wait never suspends again.
package reactor

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Task is what a Waiter runs when its socket is ready: on w, a loop's worker, or on a new
// goroutine (w nil) when woken by Wake.
type Task interface {
	RunReady(w *Worker)
}

// Waiter is a suspended computation. Its address is what Wait stores, so it is kept in
// the structure it resumes, and waiting allocates nothing.
type Waiter struct {
	Task Task
}

// ErrUnsupported is returned by New where there is no epoll (everywhere but Linux).
var ErrUnsupported = errors.New("reactor: not supported on this platform")

// ErrClosed is returned by Add once the Set is closed.
var ErrClosed = errors.New("reactor: set closed")

// Endpoint is one socket as the loops see it. The zero value is unregistered; Add
// registers it.
type Endpoint struct {
	pend    atomic.Bool
	hup     atomic.Bool // the peer closed or the socket failed: a read would not block
	waiter  atomic.Pointer[Waiter]
	drained bool // the reader's: its last read found the socket empty
	set     *Set
	l       atomic.Pointer[loop]
	slot    uint32
	gen     uint32
	fd      int
}

// Registered reports whether the endpoint is in a loop's epoll set.
func (ep *Endpoint) Registered() bool { return ep.l.Load() != nil }

// ReadStart is called by the reader before each read of the socket: what signalled data
// so far is about to be read.
func (ep *Endpoint) ReadStart() { ep.pend.Store(false) }

// ReadDone is called by the reader after each read: drained tells that the read found the
// socket empty (it returned less than it could take, or would have blocked).
func (ep *Endpoint) ReadDone(drained bool) { ep.drained = drained }

// Drained reports whether the last read found the socket empty.
func (ep *Endpoint) Drained() bool { return ep.drained }

// MarkUnknown forgets that the socket was found empty: the next Wait reads first.
func (ep *Endpoint) MarkUnknown() { ep.drained = false }

// Wait suspends wt until the socket has data, and reports whether it did. It reports false,
// storing nothing, when the socket may hold unread data: the caller goes on and reads. On
// true the caller must return without touching what wt resumes: a loop may already be
// running it.
func (ep *Endpoint) Wait(wt *Waiter) bool {
	if !ep.drained || ep.hup.Load() || ep.l.Load() == nil {
		return false
	}
	ep.waiter.Store(wt)
	if ep.pend.Load() {
		if ep.waiter.CompareAndSwap(wt, nil) {
			return false
		}
		// A loop took wt meanwhile and runs it.
	}
	return true
}

// Wake runs the endpoint's waiter, if one is suspended, on a new goroutine, as if the
// socket had signalled: for a deadline set or a close made by another goroutine, which the
// waiter must see. It reports whether a waiter was woken.
func (ep *Endpoint) Wake() bool {
	ep.pend.Store(true)
	if wt := ep.waiter.Swap(nil); wt != nil {
		go wt.Task.RunReady(nil)
		return true
	}
	return false
}

// Waiting reports whether a waiter is suspended on the endpoint.
func (ep *Endpoint) Waiting() bool { return ep.waiter.Load() != nil }

// signal is the loop's: the socket has data, or hung up (hup). A hang-up is kept: a
// short read drains the data before it, but the end of the stream stays readable and is
// not signalled again.
func (ep *Endpoint) signal(w *Worker, hup bool) {
	if hup {
		ep.hup.Store(true)
	}
	ep.pend.Store(true)
	if wt := ep.waiter.Swap(nil); wt != nil {
		wt.Task.RunReady(w)
	}
}

// Worker is one goroutine running a loop. Code run by a Waiter gets it, to Detach before
// it blocks.
type Worker struct {
	l        *loop
	detached bool   // under l.mu: it no longer runs the loop
	busy     bool   // under l.mu: it is running an event
	seq      uint64 // under l.mu: events started
}

// Detach lets the loop go on without w's goroutine, which then finishes the event it runs
// as an ordinary goroutine. It does nothing on a nil or already detached Worker, or on a
// worker not running an event.
func (w *Worker) Detach() {
	if w == nil {
		return
	}
	l := w.l
	l.mu.Lock()
	l.detachLocked(w)
	l.mu.Unlock()
}

// Stats are counters of a Set.
type Stats struct {
	Loops    int    // event loops
	Events   uint64 // socket events handled
	Detached uint64 // workers detached before blocking, or by the watchdog
	Watchdog uint64 // of those, by the watchdog
}

// slots maps the slot numbers in epoll events to Endpoints. A slot's generation changes
// when it is freed, so an event read before a Remove finds nothing.
type slots struct {
	mu     sync.Mutex
	chunks [maxChunks]atomic.Pointer[[chunkSize]slotEntry]
	free   []uint32
	next   uint32
}

type slotEntry struct {
	ep  atomic.Pointer[Endpoint]
	gen atomic.Uint32
}

const (
	chunkSize = 1024
	maxChunks = 4096 // 4M sockets
)

var errFull = errors.New("reactor: too many sockets")

// alloc gives ep a slot and generation.
func (t *slots) alloc(ep *Endpoint) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var slot uint32
	if n := len(t.free); n > 0 {
		slot = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		if t.next >= chunkSize*maxChunks {
			return errFull
		}
		slot = t.next
		t.next++
		if c := slot / chunkSize; t.chunks[c].Load() == nil {
			t.chunks[c].Store(new([chunkSize]slotEntry))
		}
	}
	e := &t.chunks[slot/chunkSize].Load()[slot%chunkSize]
	gen := e.gen.Load() + 1
	if gen == 0 {
		gen = 1
	}
	e.gen.Store(gen)
	e.ep.Store(ep)
	ep.slot, ep.gen = slot, gen
	return nil
}

// release frees ep's slot.
func (t *slots) release(ep *Endpoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &t.chunks[ep.slot/chunkSize].Load()[ep.slot%chunkSize]
	if e.ep.Load() != ep {
		return
	}
	e.ep.Store(nil)
	e.gen.Add(1)
	t.free = append(t.free, ep.slot)
}

// lookup returns the endpoint of an event, or nil when its slot was freed since.
func (t *slots) lookup(slot, gen uint32) *Endpoint {
	if slot >= chunkSize*maxChunks {
		return nil
	}
	ch := t.chunks[slot/chunkSize].Load()
	if ch == nil {
		return nil
	}
	e := &ch[slot%chunkSize]
	ep := e.ep.Load()
	if ep == nil || e.gen.Load() != gen {
		return nil
	}
	return ep
}
