package lease

import (
	"time"

	"github.com/cmlite/cmpool/protocol"
)

// noteReady counts the request a ReadyForQuery answered and, at status idle, the
// transaction it ended. The caller holds c.mu; l.pending is already decremented. What
// the Observer and the log are to hear of is kept in l.ready, for reportReady once the
// relay holds no lock: a hook may block or call back into cmpool.
func (l *Lease) noteReady(status byte) {
	now := Nanotime()
	l.readyAt = now
	bp := l.pool
	if l.qStart != 0 {
		d := now - l.qStart
		bp.Counters.Queries.Add(1)
		bp.Counters.QueryTime.Add(d)
		l.ready.Query, l.ready.HasQuery = time.Duration(d), true
		l.qStart = 0
		if l.pending > 0 {
			l.qStart = now // the next pipelined request is running now
		}
	}
	if status == 'I' && l.xStart != 0 {
		d := now - l.xStart
		bp.Counters.Xacts.Add(1)
		bp.Counters.XactTime.Add(d)
		l.ready.Xact, l.ready.HasXact = time.Duration(d), true
		l.xStart = l.qStart
	}
	l.flushBytes()
}

// reportReady tells the host what noteReady saw on l. It runs on whatever relays l, holding no lock.
func (l *Lease) reportReady() {
	n := l.ready
	if !n.HasQuery && !n.HasXact && n.ErrCode == "" {
		return
	}
	l.ready = Report{}
	n.Backend = l.pool.Name
	l.c.Host.Report(n)
}

// flushBytes adds the bytes l relayed to its pool's counters. It runs on the relay
// goroutine, which owns l.sentBytes.
func (l *Lease) flushBytes() {
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
func (l *Lease) noteServerError(code string) {
	c := l.c
	if code == "" {
		code = protocol.CodeInternalError
	}
	c.Host.NoteServerError(code)
	l.ready.ErrCode = code
}
