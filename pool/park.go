package pool

import (
	"errors"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/park"
)

// Idle clients without goroutines.
//
// A client that has held no server for Config.ParkIdleAfter is parked: its goroutine ends,
// and its socket waits in the server's epoll set (pool/internal/park) with nothing else
// held (its read and write buffers are already given back while it is idle; see
// pool/internal/fastio). When the client sends something, or hangs up, a new goroutine
// resumes its loop where it stopped.
//
// How a client gets there: the sweeper (parkIdle) looks at the clients every half
// ParkIdleAfter and, for each idle long enough, sets parkReq and a read deadline in the
// past. The client goroutine, blocked reading, sees the timeout and parks if it still may
// (tryPark): no server, nothing buffered, no timer on its socket, no LISTEN, no TLS (the
// TLS layer may hold decrypted bytes). Otherwise it puts its read deadline back and
// reads on.
//
// Whatever needs a parked client's goroutine sets a read deadline on its socket or closes
// it (a drain, KILL_CLIENT, KILL, a forced shutdown): Conn.Net is a wakeConn, which wakes
// the client first. So the rest of cmpool does not know about parking.

// defaultParkIdleAfter is Config.ParkIdleAfter's default.
const defaultParkIdleAfter = time.Second

// errParked ends a client goroutine whose client is parked: serve does not clean up.
var errParked = errors.New("pool: client parked")

// parkable returns the socket's descriptor when conn can be parked, or wait on an event
// loop: a plain TCP or Unix socket; -1 otherwise.
func parkable(conn net.Conn) int32 { return int32(fastio.FD(conn)) }

// wake resumes c if it is parked, or suspended on an event loop (loops.go).
func (c *clientSession) wake() {
	if c.lp != nil {
		if ep := c.lp.waitingOn.Load(); ep != nil {
			ep.Wake()
		}
	}
	if c.parkTok.Load() == 0 {
		return
	}
	c.parkMu.Lock()
	t := park.Token(c.parkTok.Swap(0))
	c.parkMu.Unlock()
	if t != 0 {
		c.srv.parker.Wake(t)
	}
}

// Resume runs the parked client's loop again, on the goroutine the park set started for it.
func (c *clientSession) Resume() {
	c.parkMu.Lock()
	c.parkTok.Store(0)
	c.parkMu.Unlock()
	c.Conn.Net.(*wakeConn).attach()
	c.run(c.srv.ctx, resumePark)
}

// parkReady reports whether c, as the sweeper sees it at now, has been idle long enough to
// be asked to park, as far as its atomic fields tell (the sweeper holds Server.mu, and
// checks for a lease after).
func (c *clientSession) parkReady(now int64, after time.Duration) bool {
	// A client asked before and not parked yet is asked again (parkReq stays set): its
	// goroutine may have put its read deadline back (after a transaction) between the
	// sweeper's request and its deadline, and would otherwise never see the request.
	// loggedIn comes first: parkable and admin are final once it is set.
	if !c.loggedIn.Load() || !c.parkable || c.admin || c.parkTok.Load() != 0 ||
		c.Closing.Load() || c.IdleArmed() || c.waitingSince.Load() != 0 {
		return false
	}
	since := c.IdleSince.Load()
	return since != 0 && now-since >= int64(after) && since != c.parkRefused.Load()
}

// parkAtLoginOver is how many logged-in clients may hold a goroutine (not parked) before
// a client that has just logged in is parked at once; see parkAtLogin.
const parkAtLoginOver = 256

// parkAtLogin parks c, which has just logged in and sent nothing more, at once instead of
// after ParkIdleAfter, when more than parkAtLoginOver clients hold a goroutine, and
// reports whether it did. A burst of connections that then stay idle (an application's
// pool filling up, the bench's idle clients) would otherwise hold a goroutine and a
// net.Conn each for ParkIdleAfter, all at once: the runtime never frees the goroutine
// structs and poll descriptors of such a peak, and the stacks only slowly. Under the
// limit a new client keeps its goroutine, so that its first request, usually on its way,
// costs no wake-up.
func (c *clientSession) parkAtLogin() bool {
	s := c.srv
	if !c.parkable || s.parker == nil || s.nClients.Load()-int64(s.parker.Len()) <= parkAtLoginOver {
		return false
	}
	return c.tryPark()
}

// tryPark parks c if it still may, and reports whether it did; the client goroutine calls
// it when its read timed out at the sweeper's request, and ends at once if it did.
func (c *clientSession) tryPark() bool {
	if c.listening != nil || c.Discarding || c.BeginDeferred || c.Stmts.HasDeferred() {
		// Until the client sends something, asking again would be refused again: on the
		// event loops each ask is a wake onto a goroutine (parkReady).
		c.parkRefused.Store(c.IdleSince.Load())
		return false
	}
	if c.Conn.TLS != nil || c.rearmIdle.Load() || c.Conn.R.Buffered() > 0 || c.Conn.FR.Pending() || c.killed.Load() ||
		c.Closing.Load() || c.IdleArmed() || c.xactTimedOut.Load() || c.CurrentLease() != nil {
		return false
	}
	w := c.Conn.Net.(*wakeConn)
	if c.lp != nil {
		c.lp.ep.Remove() // out of its event loop's epoll set while the descriptor is valid
		c.lp.ep.MarkUnknown()
	}
	fd := w.detach() // parkconn.go
	if fd < 0 {
		// Parked with its connection.
		if fd = fastio.FD(w.Conn); fd < 0 || w.Conn.SetReadDeadline(time.Time{}) != nil {
			return false
		}
	}
	c.dropWaiter()
	c.ForgetIdle() // before Park: from there the client may run on another goroutine
	c.parkMu.Lock()
	t, err := c.srv.parker.Park(fd, c)
	if err == nil {
		c.parkTok.Store(uint64(t))
	}
	c.parkMu.Unlock()
	if err != nil {
		w.attach()
		return false
	}
	// A drain or a kill that began meanwhile, or a deadline or close asked for while the
	// socket was detached, woke nothing: wake now.
	if c.Closing.Load() || c.killed.Load() || w.asked() {
		c.wake()
	}
	return true
}

// rearmIdleClients times the clients idle now by a client_idle_timeout a reload turned on
// or changed: otherwise a client would see it only after its next transaction, and a
// parked client (which parks only without the timeout) never. Like the parking sweeper, it
// asks each idle client (rearmIdle) and sets a read deadline in the past, which wakes a
// parked or suspended client; the client goroutine then arms the timeout from now
// (rearm).
func (s *Server) rearmIdleClients() {
	s.askIdle(nil, func(c *clientSession) bool {
		return c.loggedIn.Load() && !c.admin && !c.Closing.Load() && c.waitingSince.Load() == 0 && c.IdleSince.Load() != 0
	}, func(c *clientSession) *atomic.Bool { return &c.rearmIdle }, true)
}

// askIdle asks the clients pick selects (under s.mu) that hold no server to look at the
// request flag returns: it sets the flag, then a read deadline in the past, which ends the
// client goroutine's read. wake: through the client's wakeConn, which first resumes a
// parked or suspended client; otherwise on the socket itself. It returns the clients
// picked, in buf's storage (the caller's to reuse).
func (s *Server) askIdle(buf []*clientSession, pick func(*clientSession) bool, flag func(*clientSession) *atomic.Bool, wake bool) []*clientSession {
	clear(buf)
	buf = buf[:0]
	s.mu.Lock()
	for c := range s.conns {
		if pick(c) {
			buf = append(buf, c)
		}
	}
	s.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for _, c := range buf {
		if c.CurrentLease() != nil {
			continue
		}
		flag(c).Store(true)
		if wake {
			_ = c.Conn.Net.SetReadDeadline(past)
		} else {
			_ = c.Conn.Net.(*wakeConn).setReadDeadline(past)
		}
	}
	return buf
}

// rearm is what the client goroutine does when its read timed out at rearmIdleClients'
// request: an idle client's timeout is armed from now, and the read deadline set back to
// what the timeouts want.
func (c *clientSession) rearm() {
	if !c.IdleArmed() && c.CurrentLease() == nil && !c.BeginDeferred {
		c.ArmIdleTimeout(false)
	}
	c.RestoreReadDeadline()
}

// afterPark is what the client goroutine does when its read timed out at the sweeper's
// request and it could not park: its read deadline goes back to what its timers want.
func (c *clientSession) afterPark() {
	if c.xactTimedOut.Load() {
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(-time.Second))
		return
	}
	c.RestoreReadDeadline()
}

// Returning memory after many clients parked: their goroutines' stacks are free, but the
// runtime gives free memory back to the system only slowly. When at least releaseAfterParked
// more clients are parked than at the last release, and releaseEvery has passed since, the
// sweeper returns it at once (debug.FreeOSMemory: a collection, then the release). It
// happens after a burst of logins has gone idle, not in steady traffic.
const (
	releaseAfterParked = 2000
	releaseEvery       = 5 * time.Second
)

// memReleaser returns memory after a burst of idle clients gave up their goroutines; see
// above.
type memReleaser struct {
	at   time.Time
	idle int // idle clients at the last release
}

// tick is called periodically with the clients idle without a goroutine now; settled
// tells that no more are on their way.
func (m *memReleaser) tick(idle int, settled bool) {
	if idle < m.idle {
		m.idle = idle
	} else if idle-m.idle >= releaseAfterParked && settled && time.Since(m.at) >= releaseEvery {
		debug.FreeOSMemory()
		m.at, m.idle = time.Now(), idle
	}
}

// releaseLoopIdle returns memory after bursts of clients suspended on the event loops
// (loops.go), which give up their goroutines at once: a burst has settled when a second
// passes with no more of them. It ends with the server.
func (s *Server) releaseLoopIdle() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var rel memReleaser
	last := int64(-1)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		n := s.loopIdle.Load()
		rel.tick(int(n), n <= last)
		last = n
	}
}

// parkIdle is the sweeper: every half ParkIdleAfter it asks the clients idle for that long
// to park. It ends with the server.
func (s *Server) parkIdle(after time.Duration) {
	tick := time.NewTicker(max(after/2, 10*time.Millisecond))
	defer tick.Stop()
	var ready []*clientSession
	var rel memReleaser
	last := -1
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		// When the last sweep asked nobody to park, and no more parked since (at login:
		// parkAtLogin), the burst is parked.
		n := s.parker.Len()
		rel.tick(n, len(ready) == 0 && n <= last)
		last = n
		now := lease.Nanotime()
		// A client suspended on an event loop is woken to park; a client goroutine blocked
		// reading sees its read time out.
		ready = s.askIdle(ready, func(c *clientSession) bool { return c.parkReady(now, after) },
			func(c *clientSession) *atomic.Bool { return &c.parkReq }, s.loops != nil)
		s.parkAsks.Add(uint64(len(ready)))
	}
}
