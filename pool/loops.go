package pool

import (
	"io"
	"runtime"
	"sync/atomic"

	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/reactor"
)

// Client sessions on event loops.
//
// With Config.EventLoops set, a client session has a goroutine only while it has
// something to do. Two places in its life wait for a socket, and both can be suspended
// on an event loop (pool/internal/reactor):
//
//   - (a) between requests, at the top of loop, when nothing of the client's next message
//     is buffered: its socket waits in a loop's epoll set, and the loop runs the session
//     (clientResume) when the client sends something or hangs up;
//   - (b) in the inline relay, when the server has not answered yet (lease.relayAfter):
//     the server's socket waits, and the loop goes on with the relay (relayResume), and
//     then with the session.
//
// The loop runs the session on its own goroutine, so a request and its reply cost no
// goroutine wake-up, and no read is made only to find a socket empty: the raw socket I/O
// tells the endpoint whether its last read drained the socket (fastio.Watcher). Whatever
// would block on a loop detaches the loop's worker first (detachLoop): a read or write
// that must wait for the socket, waiting for a server or for a pause to end. The session
// then goes on as an ordinary goroutine until it is suspended again, and the loop goes on
// with a new one. A watchdog detaches any worker held for milliseconds.
//
// A session suspends only when nothing else needs its goroutine: not over TLS (the TLS
// layer may hold decrypted bytes), not while it LISTENs, and not while a read deadline
// times it (client_idle_timeout, idle_transaction_timeout, query_timeout, a drain, a
// kill). Everything that sets a deadline on, or closes, a suspended session's socket wakes
// it first (wakeConn, and backend's wakeNet for server sockets), so that it runs on a
// goroutine of its own and sees the deadline as before.

// newLoops starts n event loops (Config.EventLoops; negative: one per usable CPU), or
// returns nil when they are off (0) or unsupported.
func (s *Server) newLoops(n int) *reactor.Set {
	if n == 0 {
		return nil
	}
	if n < 0 {
		n = runtime.GOMAXPROCS(0)
	}
	set, err := reactor.New(n)
	if err != nil {
		s.log.Warn("event loops unavailable: client sessions keep their goroutines", "error", err)
		return nil
	}
	s.log.Info("client sessions run on event loops", "loops", n)
	return set
}

// onLoop is a session's state on the event loops, allocated only when they are on: ep is
// its socket in a loop's epoll set once registered; w is the loop worker running the
// session now, if any; waitC and waitS resume it after a wait for the client or for its
// server; waitingOn is the endpoint it is suspended on (for wake), or nil; blockFn is
// detachLoop, bound once; fd is the socket's descriptor, -1 once it failed to join a loop;
// claims is its wait for a server (claim.go), nil until its first.
type onLoop struct {
	fd        int32
	ep        reactor.Endpoint
	w         atomic.Pointer[reactor.Worker]
	waitC     reactor.Waiter
	waitS     reactor.Waiter
	waitingOn atomic.Pointer[reactor.Endpoint]
	blockFn   func()
	claims    *claimState
}

// onLoops gives c its event-loop state; c's socket (fio, descriptor fd) can wait on the
// loops.
func (c *clientSession) onLoops(fio io.ReadWriter, fd int32) {
	lp := &onLoop{fd: fd}
	lp.waitC.Task, lp.waitS.Task, lp.blockFn = (*clientResume)(c), (*relayResume)(c), c.detachLoop
	c.lp, c.OnLoops = lp, true
	fastio.Watch(fio, c)
}

// clientResume runs a session suspended between requests.
type clientResume clientSession

func (r *clientResume) RunReady(w *reactor.Worker) {
	c := (*clientSession)(r)
	c.srv.loopIdle.Add(-1)
	c.resumed(w, resumeLoop)
}

// relayResume runs a session whose inline relay was suspended.
type relayResume clientSession

func (r *relayResume) RunReady(w *reactor.Worker) {
	(*clientSession)(r).resumed(w, resumeRelay)
}

// resumed runs c from where it was suspended, on w (nil: on a goroutine of its own).
func (c *clientSession) resumed(w *reactor.Worker, from runFrom) {
	c.lp.waitingOn.Store(nil)
	c.lp.w.Store(w)
	c.run(c.srv.ctx, from)
	// c may be suspended again, and run by another goroutine: not touched from here.
}

// detachLoop lets the event loop running c go on without c's goroutine, before c blocks.
func (c *clientSession) detachLoop() {
	if c.lp == nil {
		return
	}
	if w := c.lp.w.Swap(nil); w != nil {
		w.Detach()
	}
}

// ReadStart, ReadDone and WillBlock watch the client socket's raw I/O (fastio.Watcher).
func (c *clientSession) ReadStart()            { c.lp.ep.ReadStart() }
func (c *clientSession) ReadDone(drained bool) { c.lp.ep.ReadDone(drained) }
func (c *clientSession) WillBlock()            { c.detachLoop() }

// waitClient suspends c between requests when it may (see above), and reports whether it
// did: then the caller returns lease.ErrSuspended at once.
func (c *clientSession) waitClient() bool {
	loops, lp := c.srv.loops, c.lp
	if lp == nil || lp.fd < 0 || c.admin || c.Conn.TLS != nil || c.listening != nil || c.IdleArmed() || c.rearmIdle.Load() || c.parkReq.Load() || c.killed.Load() ||
		c.Closing.Load() || c.xactTimedOut.Load() || c.Conn.FR.FrameBuffered() {
		return false
	}
	if !lp.ep.Registered() && loops.Add(&lp.ep, int(lp.fd)) != nil {
		lp.fd = -1
		return false
	}
	if !lp.ep.Drained() && c.Conn.R.FillNow() {
		return false // read on: its last read filled the buffer (the startup packet), and there was more
	}
	c.Conn.R.ReleaseIfEmpty() // a short read kept it: an idle client holds no buffer
	c.dropWaiter()            // nor a waiter
	c.srv.loopIdle.Add(1)
	if c.suspendOn(&lp.ep, &lp.waitC) {
		return true
	}
	c.srv.loopIdle.Add(-1)
	return false
}

// suspendOn waits on ep with wt, and reports whether c is suspended: then c is no longer
// this goroutine's to touch. Otherwise c goes on, on the worker it ran on.
func (c *clientSession) suspendOn(ep *reactor.Endpoint, wt *reactor.Waiter) bool {
	lp := c.lp
	w := lp.w.Swap(nil)
	lp.waitingOn.Store(ep)
	if ep.Wait(wt) {
		return true
	}
	lp.waitingOn.Store(nil)
	lp.w.Store(w)
	return false
}

// WaitServer suspends l's inline relay until its server sends more (lease.Host); only
// called for a client on the loops (OnLoops).
func (h *leaseHost) WaitServer(l *lease.Lease) bool {
	c := (*clientSession)(h)
	loops := c.srv.loops
	sc := l.Server()
	if sc.FD() < 0 {
		return false
	}
	if !sc.EP.Registered() && loops.Add(&sc.EP, sc.FD()) != nil {
		return false
	}
	return c.suspendOn(&sc.EP, &c.lp.waitS)
}

// BlockHook is c's detachLoop (lease.Host); nil off the loops, where nothing needs it.
func (h *leaseHost) BlockHook() *func() {
	if h.lp == nil {
		return nil
	}
	return &h.lp.blockFn
}

// loopStat is Stat's EventLoops.
func (s *Server) loopStat() EventLoopStat {
	st := s.loops.Stats()
	return EventLoopStat{Loops: st.Loops, Events: st.Events, Detached: st.Detached, Watchdog: st.Watchdog,
		ServerWaits: s.claimWaits.Load(), ServerWaitsHanded: s.claimHanded.Load(), ServerWaitsOther: s.claimOther.Load(),
		Idle: int(s.loopIdle.Load())}
}
