//go:build linux

package reactor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Set is a few event loops; see the package comment. Its methods are safe for concurrent
// use.
type Set struct {
	loops []*loop
	next  atomic.Uint32 // round robin over the loops for Add
	slots slots

	events   atomic.Uint64
	detached atomic.Uint64
	watchdog atomic.Uint64

	// The watchdog rests while every loop waits for events (see watch): resting is set
	// then, and a worker that starts on an event wakes it through watchWake.
	resting   atomic.Bool
	watchWake chan struct{}

	stop   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup
}

// loop is one epoll set and the worker running it.
type loop struct {
	s     *Set
	epfd  int
	wakeR int // read end of a pipe in the set: a byte on it stops the loop, or wakes it for Post
	wakeW int

	mu      sync.Mutex
	cur     *Worker              // the worker running the loop
	queue   []syscall.EpollEvent // events read and not yet run
	head    int
	ready   []*Waiter // posted, not yet run (Post)
	rhead   int
	waiting bool   // the worker is in, or about to be in, epoll_wait: Post wakes it
	woken   bool   // a byte is on its way to the wake pipe
	lastSeq uint64 // the watchdog's: cur.seq at its last look
	yielded int64  // the worker's: when the loop last yielded its processor (nanotime)
	stopped bool
}

// epollET is EPOLLET as the uint32 of an event's mask.
const epollET = 1 << 31

// watchdogEvery is how often the watchdog looks at the loops: a worker found on the same
// event twice in a row is detached, so a wait nobody announced holds a loop for at most
// two periods.
const watchdogEvery = 2 * time.Millisecond

// New starts n event loops (at least 1) and their watchdog.
func New(n int) (*Set, error) {
	s := &Set{stop: make(chan struct{}), watchWake: make(chan struct{}, 1)}
	for range max(n, 1) {
		l, err := newLoop(s)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.loops = append(s.loops, l)
	}
	for _, l := range s.loops {
		w := &Worker{l: l}
		l.cur = w
		s.wg.Add(1)
		go l.run(w)
	}
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

func newLoop(s *Set) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, err
	}
	// The pipe's events carry slot 0 and generation 0, which no endpoint has.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(p[0])
		_ = syscall.Close(p[1])
		return nil, err
	}
	return &loop{s: s, epfd: epfd, wakeR: p[0], wakeW: p[1], queue: make([]syscall.EpollEvent, 0, 128)}, nil
}

// Add registers the socket fd as ep in one of the loops. The socket must stay open until
// Remove. What ep's reader noted before stays valid: data already queued when the socket
// joins the set is signalled at once.
func (s *Set) Add(ep *Endpoint, fd int) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.slots.alloc(ep); err != nil {
		return err
	}
	l := s.loops[int(s.next.Add(1))%len(s.loops)]
	ep.set, ep.fd = s, fd
	ep.l.Store(l)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(ep.slot), Pad: int32(ep.gen)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		s.slots.release(ep)
		ep.l.Store(nil)
		return err
	}
	return nil
}

// Remove takes ep out of its loop, before its socket is closed; a waiter still suspended
// is woken on a goroutine of its own (it then finds the socket closed). Remove on an
// unregistered endpoint does nothing.
func (ep *Endpoint) Remove() {
	l := ep.l.Swap(nil)
	if l == nil {
		return
	}
	if !ep.set.closed.Load() {
		// After Close the epoll sets are gone, and their descriptors may be reused.
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ep.fd, nil)
	}
	ep.set.slots.release(ep)
	ep.Wake()
}

// Post runs wt on ep's loop, after the event the loop runs now, if any, and before it
// waits for more: for a session that a server was handed to while it waited for one. wt
// runs on a new goroutine when ep is in no loop.
func (ep *Endpoint) Post(wt *Waiter) {
	l := ep.l.Load()
	if l == nil {
		go wt.Task.RunReady(nil)
		return
	}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		go wt.Task.RunReady(nil)
		return
	}
	l.ready = append(l.ready, wt)
	wake := l.waiting && !l.woken
	l.woken = l.woken || wake
	l.mu.Unlock()
	if wake {
		_, _ = syscall.Write(l.wakeW, []byte{1})
	}
}

// Close stops the loops. Waiters still suspended stay so: their owners close their
// sockets (which wakes them) before the Set is closed.
func (s *Set) Close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.stop)
	for _, l := range s.loops {
		l.mu.Lock()
		l.stopped = true
		l.mu.Unlock()
		_, _ = syscall.Write(l.wakeW, []byte{0})
	}
	s.wg.Wait()
	for _, l := range s.loops {
		_ = syscall.Close(l.epfd)
		_ = syscall.Close(l.wakeR)
		_ = syscall.Close(l.wakeW)
	}
}

// run is worker w running loop l until it is detached or the loop stops.
func (l *loop) run(w *Worker) {
	events := make([]syscall.EpollEvent, 128)
	l.mu.Lock()
	for {
		w.busy = false
		if w.detached {
			l.mu.Unlock()
			return
		}
		if l.stopped {
			// What was posted and not run yet runs on goroutines of its own, as Post
			// does once the loop is stopped.
			for _, wt := range l.ready[l.rhead:] {
				go wt.Task.RunReady(nil)
			}
			l.ready, l.rhead = nil, 0
			l.mu.Unlock()
			l.s.wg.Done()
			return
		}
		if l.rhead < len(l.ready) {
			wt := l.ready[l.rhead]
			l.ready[l.rhead] = nil
			if l.rhead++; l.rhead == len(l.ready) {
				l.ready, l.rhead = l.ready[:0], 0
			}
			w.busy = true
			w.seq++
			l.mu.Unlock()
			l.s.wakeWatch()
			wt.Task.RunReady(w)
			l.mu.Lock()
			continue
		}
		if l.head == len(l.queue) {
			l.queue, l.head = l.queue[:0], 0
			l.waiting = true
			l.mu.Unlock()
			n := l.wait(events)
			l.mu.Lock()
			l.waiting = false
			for _, ev := range events[:n] {
				if ev.Fd == 0 && ev.Pad == 0 {
					// The wake pipe: l.stopped is set, or something was posted.
					if l.woken {
						l.drainWake()
						l.woken = false
					}
					continue
				}
				l.queue = append(l.queue, ev)
			}
			continue
		}
		ev := l.queue[l.head]
		l.head++
		w.busy = true
		w.seq++
		l.mu.Unlock()
		l.s.wakeWatch()
		if ep := l.s.slots.lookup(uint32(ev.Fd), uint32(ev.Pad)); ep != nil {
			l.s.events.Add(1)
			ep.signal(w, ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0)
		}
		l.mu.Lock()
	}
}

// drainWake empties the wake pipe of Post's bytes.
func (l *loop) drainWake() {
	var b [64]byte
	for {
		n, err := syscall.Read(l.wakeR, b[:])
		if n < len(b) || err != nil {
			return
		}
	}
}

// A loop's wait keeps its processor (a raw epoll_pwait, which the runtime does not see as a
// system call) for up to keepWaits waits of keepWait each, and only then blocks as a
// system call that gives the processor up. Under load the next event comes within
// microseconds: a blocking wait would hand the processor to a runtime thread that, with
// nothing else to run, sleeps in the runtime's own poller, where every packet on the
// loop's sockets (which are registered there too) wakes it for nothing. Measured in
// docs/benchmarks/analysis.md: with GOMAXPROCS=1 and one loop, cmpool's CPU per
// transaction falls by a fifth to a quarter.
//
// A loop that keeps its processor must let the goroutines queued behind it run: it
// yields (runtime.Gosched) after each kept wait that ends empty or is interrupted (the
// runtime's preemption signal, for a garbage collection, interrupts it), and before a
// wait when it has not yielded for yieldEvery.
const (
	keepWait   = 1 // ms
	keepWaits  = 3
	yieldEvery = time.Millisecond
)

// monoStart makes nanotime a monotonic clock.
var monoStart = time.Now()

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(monoStart)) }

// wait returns the next events of the loop's epoll set: at once if some are ready, else
// after waiting for them, first keeping the processor (see keepWait), then blocking.
func (l *loop) wait(events []syscall.EpollEvent) int {
	if now := nanotime(); now-l.yielded > int64(yieldEvery) {
		runtime.Gosched()
		l.yielded = now
	}
	for i := 0; i <= keepWaits; i++ {
		timeout := keepWait
		if i == 0 {
			timeout = 0
		}
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(timeout), 0, 0)
		if e == 0 && n > 0 {
			return int(n)
		}
		if e != 0 && e != syscall.EINTR {
			return 0
		}
		if i > 0 || e == syscall.EINTR {
			runtime.Gosched()
			l.yielded = nanotime()
		}
	}
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0
		}
		return n
	}
}

// detachLocked detaches w if it runs l's current event: a new worker takes the loop over,
// with the events not yet run. The caller holds l.mu.
func (l *loop) detachLocked(w *Worker) bool {
	if w.detached || !w.busy || l.cur != w || l.stopped {
		return false
	}
	w.detached = true
	nw := &Worker{l: l}
	l.cur = nw
	l.s.detached.Add(1)
	go l.run(nw)
	return true
}

// watch is the watchdog; see watchdogEvery. While every loop waits for events, nothing can
// be held, and the watchdog rests instead of waking every period: an idle cmpool with
// the loops on is then woken by nothing of theirs. A worker that starts on an event wakes
// it (wakeWatch).
func (s *Set) watch() {
	defer s.wg.Done()
	t := time.NewTicker(watchdogEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.allWaiting() {
			// Rest, then look again: a worker that started before resting was set did not
			// wake the watchdog, and is seen busy here.
			s.resting.Store(true)
			if s.allWaiting() {
				t.Stop()
				select {
				case <-s.stop:
					return
				case <-s.watchWake:
				}
				t.Reset(watchdogEvery)
			}
			s.resting.Store(false)
			continue
		}
		for _, l := range s.loops {
			l.mu.Lock()
			if w := l.cur; w.busy && w.seq == l.lastSeq {
				if l.detachLocked(w) {
					s.watchdog.Add(1)
				}
			}
			l.lastSeq = l.cur.seq
			l.mu.Unlock()
		}
	}
}

// allWaiting reports whether every loop's worker waits for events, with nothing queued
// or posted to run.
func (s *Set) allWaiting() bool {
	for _, l := range s.loops {
		l.mu.Lock()
		idle := l.waiting && !l.cur.busy
		l.mu.Unlock()
		if !idle {
			return false
		}
	}
	return true
}

// wakeWatch wakes the watchdog if it rests; called by a worker that starts on an event.
// Under load the watchdog does not rest, and this is one atomic load.
func (s *Set) wakeWatch() {
	if s.resting.Load() && s.resting.CompareAndSwap(true, false) {
		select {
		case s.watchWake <- struct{}{}:
		default:
		}
	}
}

// Stats returns the Set's counters (zero for a nil Set).
func (s *Set) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	return Stats{Loops: len(s.loops), Events: s.events.Load(), Detached: s.detached.Load(), Watchdog: s.watchdog.Load()}
}
