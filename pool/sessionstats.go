package pool

import (
	"time"

	"github.com/cmlite/cmpool/protocol"
)

// noteReady counts the request a ReadyForQuery answered and, at status idle, the
// transaction it ended. The caller holds c.mu; l.pending is already decremented. What
// the Observer and the log are to hear of is kept in l.ready, for reportReady once the
// relay holds no lock: a hook may block or call back into cmpool.
func (l *lease) noteReady(status byte) {
	now := nanotime()
	bp := l.pool
	l.ready.backend = bp.Name
	if l.qStart != 0 {
		d := now - l.qStart
		bp.Counters.Queries.Add(1)
		bp.Counters.QueryTime.Add(d)
		l.ready.query, l.ready.hasQuery = time.Duration(d), true
		l.qStart = 0
		if l.pending > 0 {
			l.qStart = now // the next pipelined request is running now
		}
	}
	if status == 'I' && l.xStart != 0 {
		d := now - l.xStart
		bp.Counters.Xacts.Add(1)
		bp.Counters.XactTime.Add(d)
		l.ready.xact, l.ready.hasXact = time.Duration(d), true
		l.xStart = l.qStart
	}
	l.flushBytes()
}

// readyNote is what the relay saw and has not reported yet: the durations of the
// request and of the transaction that ended, on backend (noteReady), and the SQLSTATE
// of an ErrorResponse from the server (noteServerError).
type readyNote struct {
	backend           string
	query, xact       time.Duration
	hasQuery, hasXact bool
	errCode           string
}

// reportReady sends what noteReady saw on l to the Observer, and logs a slow
// transaction. It runs on whatever relays l, holding no lock.
func (l *lease) reportReady() {
	c := l.c
	n := l.ready
	if !n.hasQuery && !n.hasXact && n.errCode == "" {
		return
	}
	l.ready = readyNote{}
	if n.errCode != "" {
		c.srv.observer.Observe(Event{Kind: EventError, Database: c.database, User: c.user, Backend: l.pool.Name, Code: n.errCode})
	}
	if n.hasQuery {
		c.srv.observer.Observe(Event{Kind: EventQuery, Database: c.database, User: c.user, Backend: n.backend, Duration: n.query})
	}
	if n.hasXact {
		c.srv.observer.Observe(Event{Kind: EventTransaction, Database: c.database, User: c.user, Backend: n.backend, Duration: n.xact})
		if slow := c.srv.conf().SlowTransaction; slow > 0 && n.xact > slow {
			c.log.Warn("slow transaction", "duration", n.xact.Round(time.Microsecond), "backend", n.backend)
		}
	}
}

// flushBytes adds the bytes l relayed to its pool's counters. It runs on the relay
// goroutine, which owns l.sentBytes.
func (l *lease) flushBytes() {
	if n := l.recvBytes.Swap(0); n > 0 {
		l.pool.Counters.Received.Add(n)
	}
	if l.sentBytes > 0 {
		l.pool.Counters.Sent.Add(l.sentBytes)
		l.sentBytes = 0
	}
}

// noteError counts an ErrorResponse cmpool itself sent to a client of database and user,
// with SQLSTATE code. (Errors from servers are counted by noteServerError.)
func (s *Server) noteError(database, user, code string) {
	if code == "" {
		code = protocol.CodeInternalError
	}
	s.errors.add(code)
	s.observer.Observe(Event{Kind: EventError, Database: database, User: user, Code: code})
}

// noteServerError counts an ErrorResponse from l's server on its way to the client. The
// relay calls it holding c.client.wmu: the Observer hears of it from reportReady.
func (l *lease) noteServerError(code string) {
	c := l.c
	if code == "" {
		code = protocol.CodeInternalError
	}
	c.srv.errors.add(code)
	l.ready.errCode = code
}

// noteWait counts a wait of d for a server of bp, by a client of database and user.
func (s *Server) noteWait(database, user string, bp *backendPool, d time.Duration) {
	bp.Counters.Waits.Add(1)
	bp.Counters.WaitTime.Add(int64(d))
	s.observer.Observe(Event{Kind: EventWait, Database: database, User: user, Backend: bp.Name, Duration: d})
}
