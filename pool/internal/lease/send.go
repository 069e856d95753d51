package pool

import (
	"time"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// claim returns the current lease with a message of type typ accounted to it, so the
// relay cannot end the lease before that message is answered; or nil with no lease.
func (c *Client) claim(typ byte) *lease {
	c.mu.Lock()
	for c.lease != nil && (!c.lease.open() || c.lease.restoring()) {
		c.idle.Wait()
	}
	l := c.lease
	if l != nil {
		if l.state == leaseParked {
			l.to(leaseUnrelayed) // it owes replies again
		}
		l.account(typ)
	}
	c.mu.Unlock()
	return l
}

// account records a message sent on the lease. The caller holds clientSession.mu.
func (l *lease) account(typ byte) {
	if l.qStart == 0 {
		l.qStart = nanotime()
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
func (c *Client) send(l *lease, msg []byte) error {
	out := msg
	if msg != nil && msg[0] == 'Q' {
		l.sc.Prepared.ForgetUnnamed() // a simple query replaces the unnamed statement
		if c.mode != ModeSession {
			q := c.texts.text(queryText(msg))
			t := withSettingEffects(c.host.Classifier(), q, traitsOf(q))
			c.mu.Lock()
			warn := l.applyTraits(t)
			l.scheduleRestore(t.Resets, l.sentSeq)
			c.mu.Unlock()
			if warn {
				_ = c.client.writeLocal(c.mode.sessionBoundWarning())
			}
		} else if q := c.texts.text(queryText(msg)); q != "" {
			kind, name := router.CommandOf(q)
			if r := session.ResetsOfQuery(q, kind, name); r != nil {
				c.mu.Lock()
				l.scheduleRestore(r, l.sentSeq)
				c.mu.Unlock()
			}
		}
	} else if msg != nil {
		var err error
		var warn bool
		c.mu.Lock()
		out, warn, err = l.planExtended(msg, c.out[:0])
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if warn {
			_ = c.client.writeLocal(c.mode.sessionBoundWarning())
		}
		if cap(out) <= maxScratch {
			c.out = out
		}
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	w := l.sc.Writer
	if out != nil {
		if _, err := w.Write(out); err != nil {
			c.log.Debug("write to server failed", "error", err)
		}
	} else if err := c.client.fr.Forward(w); err != nil {
		return err
	}
	// Coalesce: flush unless the client's next message is already here whole (the rest
	// of a message only partly received may be long in coming), and always when the
	// client must wait for this request's reply before sending more (scheduleRestore).
	c.unflushed = l
	if !c.client.fr.FrameBuffered() || l.mustWait() {
		c.unflushed = nil
		if err := w.Flush(); err != nil {
			// The server is gone; the relay will see it and tell the client.
			c.log.Debug("write to server failed", "error", err)
		}
	}
	return nil
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
		c.log.Debug("write to server failed", "error", err)
	}
}

// maxScratch bounds the rewrite buffer a client keeps between messages.
const maxScratch = 64 << 10

// waitIdle waits until every request sent on the current lease has been answered and
// the lease is not being synced. The caller holds c.mu.
func (c *Client) waitIdle() {
	c.ensureRelayLocked() // the replies waited for must be read
	for c.lease != nil && (c.lease.pending > 0 || c.lease.unsynced || !c.lease.open()) {
		c.idle.Wait()
	}
}

// replyLocally answers a simple query without a server: the reply, then ReadyForQuery
// with the session's transaction status. With a lease it first waits until every earlier
// request has been answered, so replies stay in order.
func (c *Client) replyLocally(reply []byte) error {
	c.flushServer()
	c.mu.Lock()
	c.waitIdle()
	// Inside a transaction block the server's status stands: a refused command does not
	// abort the transaction, unlike a server-side error (see docs/pooling.md).
	status := c.localStatus()
	if c.lease != nil {
		status = c.lease.sc.TxStatus
	}
	c.mu.Unlock()
	return c.client.writeLocal(protocol.AppendReadyForQuery(reply, status))
}
