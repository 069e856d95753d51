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

// reportReady tells the host what noteReady saw on l. It runs on whatever relays l, holding no lock.
func (l *lease) reportReady() {
	n := l.ready
	if !n.hasQuery && !n.hasXact && n.errCode == "" {
		return
	}
	l.ready = readyReport{}
	n.backend = l.pool.Name
	l.c.host.Report(n)
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

// noteServerError counts an ErrorResponse from l's server on its way to the client. The
// relay calls it holding c.client.wmu: the Observer hears of it from reportReady.
func (l *lease) noteServerError(code string) {
	c := l.c
	if code == "" {
		code = protocol.CodeInternalError
	}
	c.host.NoteServerError(code)
	l.ready.errCode = code
}
