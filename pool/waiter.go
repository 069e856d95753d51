package pool

import (
	"context"
	"sync"
	"time"
)

// waiter is the context a client goroutine waits for a server under in acquire, bounded
// by query_wait_timeout, ended by KILL_CLIENT (kill) and by the end of the server's
// context. One waiter serves the session's waits one after another for as long as each
// ends with it still open; one that was closed (the timeout, a kill, the server's end) is
// dropped, and the next wait makes a new one. A context.WithTimeout per wait cost, at
// 200 clients and a pool of 20, a timer, three allocations, and an entry added to and
// removed from the server context's children, under a lock every client shares: 3.5–4%
// of cmpool's CPU (docs/benchmarks/analysis.md).
//
// A closed waiter is never opened again, because what it was given to may still hold it:
// puddle's connect goroutine, after Acquire returned, selects on the Done channel of the
// context Acquire had.
type waiter struct {
	parent context.Context
	done   chan struct{} // closed once, when err is set; the same for the waiter's life
	kill   context.CancelFunc
	// unregister ends the registration with parent's cancellation (context.AfterFunc).
	unregister func() bool

	mu       sync.Mutex
	err      error     // why done was closed; nil while open
	active   bool      // a wait is under way (between begin and end)
	deadline time.Time // of the wait under way; zero when it has none
	// timer runs expire at fireAt, when armed. It is left armed when a wait ends, and a
	// wait that begins later, with a later deadline, leaves it be: when it fires, expire
	// arms it again for what is left of the wait under way. So a session whose waits
	// end within query_wait_timeout resets no timer per wait, only one per timeout.
	timer  *time.Timer
	armed  bool
	fireAt time.Time
}

func newWaiter(parent context.Context) *waiter {
	w := &waiter{parent: parent, done: make(chan struct{})}
	w.kill = w.cancel // bound once: KILL_CLIENT is handed a pointer to it (killableWait)
	w.unregister = context.AfterFunc(parent, w.parentDone)
	return w
}

func (w *waiter) Deadline() (time.Time, bool) {
	w.mu.Lock()
	d := w.deadline
	w.mu.Unlock()
	return d, !d.IsZero()
}

func (w *waiter) Done() <-chan struct{} { return w.done }

func (w *waiter) Err() error {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	return err
}

func (w *waiter) Value(key any) any { return w.parent.Value(key) }

// begin starts a wait, bounded by timeout when it is positive.
func (w *waiter) begin(timeout time.Duration) {
	w.mu.Lock()
	w.active = true
	if timeout > 0 {
		w.deadline = time.Now().Add(timeout)
		switch {
		case w.timer == nil:
			w.timer = time.AfterFunc(timeout, w.expire)
		case w.armed && !w.fireAt.After(w.deadline):
			// It fires first, and expire arms it again for the rest.
		default:
			w.timer.Reset(timeout) // not armed, or armed past the deadline (a reload shortened query_wait_timeout)
		}
		w.armed, w.fireAt = true, w.deadline
	}
	w.mu.Unlock()
}

// end ends the wait begin started and reports whether w may serve the next one: false
// when it was closed, and it is then let go of.
func (w *waiter) end() bool {
	w.mu.Lock()
	w.active = false
	w.deadline = time.Time{}
	open := w.err == nil
	w.mu.Unlock()
	if !open {
		w.release()
	}
	return open
}

// release lets go of w for good: it was closed, or the session leaves, parks or goes idle
// on an event loop.
func (w *waiter) release() {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
		w.armed = false
	}
	w.mu.Unlock()
	w.unregister()
}

// expire is the timer's. The wait under way may have reached its deadline; or the timer
// was armed for an earlier wait, and then it is armed again for this one, or left
// unarmed between waits.
func (w *waiter) expire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || !w.active {
		w.armed = false
		return
	}
	if left := time.Until(w.deadline); left > 0 {
		w.timer.Reset(left)
		w.armed, w.fireAt = true, w.deadline
		return
	}
	w.armed = false
	w.closeLocked(context.DeadlineExceeded)
}

// cancel ends the wait under way, if any (KILL_CLIENT). A kill that comes between waits
// needs nothing of w: the client is marked killed before, and looks before each wait.
func (w *waiter) cancel() {
	w.mu.Lock()
	if w.err == nil && w.active {
		w.closeLocked(context.Canceled)
	}
	w.mu.Unlock()
}

// parentDone closes w when the server's context ends: no wait may begin after.
func (w *waiter) parentDone() {
	w.mu.Lock()
	if w.err == nil {
		w.closeLocked(w.parent.Err())
	}
	w.mu.Unlock()
}

func (w *waiter) closeLocked(err error) {
	w.err = err
	close(w.done)
}
