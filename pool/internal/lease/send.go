package lease

import (
	"time"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Account records a message of type typ sent on l, a lease just started for it.
func (c *Client) Account(l *Lease, typ byte) {
	c.Mu.Lock()
	l.account(typ)
	c.Mu.Unlock()
}

// Forward sends the client's message of type typ (msg when it was read whole, else the
// current frame, of size bytes with its header) on l, to which it is accounted (claim,
// Account): with the deferred BEGIN and held Parses ahead of it, recorded for a retry,
// and timed by query_timeout. When it ends a request, its reply may be relayed here, on
// the client goroutine, before Forward returns, or suspended on an event loop: then
// Forward returns ErrSuspended (see relayAfter).
func (c *Client) Forward(l *Lease, typ byte, msg []byte, size int) error {
	if c.BeginDeferred {
		l.sendBegin()
	}
	if err := l.sendDeferred(); err != nil {
		return err
	}
	l.recordForRetry(typ, msg)
	if err := c.send(l, msg); err != nil {
		return err
	}
	l.recvBytes.Add(int64(size))
	if l.queryTimeout > 0 && (typ == 'Q' || typ == 'S' || typ == 'F') {
		l.armQueryTimer()
	}
	return l.relayAfter(typ)
}

// BeforeRead runs before the client goroutine reads the client: if that may block, a
// relay goroutine reads the server's replies meanwhile.
func (c *Client) BeforeRead() {
	if l := c.unrelayed; l != nil && l.state != leaseParked && !c.Conn.FR.FrameBuffered() {
		c.EnsureRelay()
	}
}

// Claim returns the current lease with a message of type typ accounted to it, so the
// relay cannot end the lease before that message is answered; or nil with no lease.
func (c *Client) Claim(typ byte) *Lease {
	c.Mu.Lock()
	for c.Lease != nil && (!c.Lease.open() || c.Lease.restoring()) {
		c.waitIdleCond()
	}
	l := c.Lease
	if l != nil {
		if l.state == leaseParked {
			l.to(leaseUnrelayed) // it owes replies again
		}
		l.account(typ)
	}
	c.Mu.Unlock()
	return l
}

// account records a message sent on the lease. The caller holds clientSession.mu.
func (l *Lease) account(typ byte) {
	if l.qStart == 0 {
		l.qStart = Nanotime()
		if l.xStart == 0 {
			l.xStart = l.qStart
		}
	}
	switch typ {
	case 'Q', 'F':
		l.pending++
		l.sentSeq++
		l.executed = true
		// A function call by OID may be set_config or anything else.
		if typ == 'F' {
			l.untracked, l.opaque = true, true
		}
	case 'S':
		l.pending++
		l.unsynced = false
		l.sentSeq++
	case 'P', 'B', 'D', 'E', 'C', 'H':
		l.unsynced = true
		l.executed = l.executed || typ == 'E'
	}
	if l.queryTimeout > 0 && l.pending > 0 {
		// A request (or COPY data for one) is on its way: its answer is due within
		// query_timeout. endsLease clears the deadline once nothing is outstanding.
		_ = l.sc.NetConn.SetReadDeadline(time.Now().Add(l.queryTimeout))
	}
}

// send passes one client message, already accounted to l, to the lease's server: msg
// when it was read whole (and rewritten if it names a prepared statement), else the
// current frame, streamed.
func (c *Client) send(l *Lease, msg []byte) error {
	out := msg
	if msg != nil && msg[0] == 'Q' {
		l.sc.Prepared.ForgetUnnamed() // a simple query replaces the unnamed statement
		if c.Mode != Session {
			q := c.Text(QueryText(msg))
			tq := c.traitsText(q) // an EXECUTE is judged by what it runs (sqlprepare.go)
			j := c.Judge(tq)
			t := withSettingEffects(c.Host.Classifier(), tq, session.TraitsOfJudged(tq, j.Kind, j.Name, j.G))
			// A temporary object pins; judged once (SessionStateRefusal judged it first).
			temp := c.Pin.On && !c.pinReserved && (t.MentionsTemp || tq != q) && c.Judge(q).TempObject() != ""
			var warn, refused bool
			c.Mu.Lock()
			if refused = l.refusePinLocked(&t, temp); !refused {
				if l.pinned != nil {
					t.MayRelease = router.MayReleaseSession(q)
				}
				if t.Resets != nil {
					if kind, _ := router.CommandOf(q); kind == router.CommandDiscardAll {
						// A pinned client's DISCARD ALL runs on its server (pool's
						// simpleCommand): the server forgets its statements and settings.
						l.sc.Prepared.Clear()
						l.resetNeeded = true
					}
				}
				warn = l.applyTraits(t)
				l.scheduleRestore(t.Resets, l.sentSeq)
			}
			c.Mu.Unlock()
			if warn {
				_ = c.Conn.WriteLocal(c.Mode.sessionBoundWarning())
			}
			if refused {
				c.SQLCommand = nil
				out = pinRefusalQuery(c.Pin.Group.refusal())
			} else if c.SQLCommand != nil {
				out = l.planSQLCommand(q, msg) // sqlprepare.go
			}
		} else if q := c.Text(QueryText(msg)); q != "" {
			kind, name := router.CommandOf(q)
			if r := session.ResetsOfQuery(q, kind, name); r != nil {
				c.Mu.Lock()
				l.scheduleRestore(r, l.sentSeq)
				c.Mu.Unlock()
			}
		}
	} else if msg != nil {
		var err error
		var warn bool
		if c.out == nil {
			c.out = new([]byte)
		}
		c.Mu.Lock()
		out, warn, err = l.planExtended(msg, (*c.out)[:0])
		c.Mu.Unlock()
		if err != nil {
			return err
		}
		if warn {
			_ = c.Conn.WriteLocal(c.Mode.sessionBoundWarning())
		}
		if cap(out) <= maxScratch {
			*c.out = out
		}
	}
	l.wmu.Lock()
	held := true // until FlushAwaitingReply takes the lock over; a panic lets it go too
	defer func() {
		if held {
			l.wmu.Unlock()
		}
	}()
	w := l.sc.Writer
	if out != nil {
		if _, err := w.Write(out); err != nil {
			c.Log.Debug("write to server failed", "error", err)
		}
	} else if err := c.Conn.FR.Forward(w); err != nil {
		return err
	}
	// Coalesce: flush unless the client's next message is already here whole (the rest
	// of a message only partly received may be long in coming), and always when the
	// client must wait for this request's reply before sending more (scheduleRestore).
	c.unflushed = l
	if c.Conn.FR.FrameBuffered() && !l.mustWait() {
		return nil
	}
	c.unflushed = nil
	var err error
	if c.repliesInline(l, msg) {
		// From here the lease is relayed inline, as relayAfter would make it: what looks at
		// a lease being relayed (transaction_timeout's abort, a pin check) must see it so
		// while the reply is waited for.
		l.startInline()
		l.awaited = true
		held = false
		err = l.sc.FlushAwaitingReply(&l.wmu) // unlocks l.wmu once flushed
	} else {
		err = w.Flush()
	}
	if err != nil {
		// The server is gone; the relay will see it and tell the client.
		c.Log.Debug("write to server failed", "error", err)
	}
	return nil
}

// repliesInline reports whether client message msg, about to be flushed to l's server,
// ends a request whose reply the client goroutine relays next, inline (relayAfter),
// with nothing else to send first and no query_timeout: then send starts the inline relay
// and the flush waits for the reply to be readable (FlushAwaitingReply), so that the
// relay's first read finds it and does not find the socket empty first. Not on the event
// loops, which suspend the relay instead of waiting.
func (c *Client) repliesInline(l *Lease, msg []byte) bool {
	return msg != nil && (msg[0] == 'Q' || msg[0] == 'S') && c.unrelayed == l && !c.OnLoops &&
		l.queryTimeout == 0 && c.Conn.FR.Buffered() == 0
}

// flushServer sends the messages send held back, before the client goroutine waits for
// their replies. The server has not seen them, so the relay cannot be ending the lease
// or writing to the server itself.
func (c *Client) flushServer() {
	l := c.unflushed
	if l == nil {
		return
	}
	c.unflushed = nil
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.sc.Writer.Flush(); err != nil {
		c.Log.Debug("write to server failed", "error", err)
	}
}

// maxScratch bounds the rewrite buffer a client keeps between messages.
const maxScratch = 64 << 10

// WaitIdle waits until every request sent on the current lease has been answered (see
// waitIdle).
func (c *Client) WaitIdle() {
	c.Mu.Lock()
	c.waitIdle()
	c.Mu.Unlock()
}

// waitIdle waits until every request sent on the current lease has been answered and
// the lease is not being synced. The caller holds c.mu.
func (c *Client) waitIdle() {
	c.ensureRelayLocked() // the replies waited for must be read
	for c.Lease != nil && (c.Lease.pending > 0 || c.Lease.unsynced || !c.Lease.open()) {
		c.waitIdleCond()
	}
}

// ReplyLocally answers a simple query without a server: the reply, then ReadyForQuery
// with the session's transaction status. With a lease it first waits until every earlier
// request has been answered, so replies stay in order.
func (c *Client) ReplyLocally(reply []byte) error {
	c.flushServer()
	c.Mu.Lock()
	c.waitIdle()
	// Inside a transaction block the server's status stands: a refused command does not
	// abort the transaction, unlike a server-side error (see docs/pooling.md).
	status := c.LocalStatus()
	if c.Lease != nil {
		status = c.Lease.sc.TxStatus
	}
	c.Mu.Unlock()
	return c.Conn.WriteLocal(protocol.AppendReadyForQuery(reply, status))
}
