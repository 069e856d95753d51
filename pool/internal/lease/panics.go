package lease

import (
	"runtime/debug"
	"sync"
	"time"

	"github.com/cmlite/cmpool/protocol"
)

// A panic on a client's goroutine or on its relay closes that client and destroys its
// server, never returns it to its pool: the server may be half updated. The process goes
// on serving the others.

// AbandonAfterPanic ends a client whose goroutine panicked: the client is closed, and so
// is its server, which may be half updated, so it is destroyed, never returned.
func (c *Client) AbandonAfterPanic() {
	_ = c.Conn.Net.Close()
	if !tryLockFor(&c.Mu, panicLockWait) {
		c.Log.Error("client session panic left its lock held: its server is not closed")
		return
	}
	l := c.Lease
	c.Lease = nil
	var relayed bool
	if l != nil {
		if l.open() || l.state == leaseEnding {
			// A syncing lease is being ended by its relay, which sees the server closed.
			l.to(leaseAbandoned)
		}
		_ = l.sc.NetConn.Close()
		relayed = c.unrelayed != l && l.done != nil && l.done != relayDone
	}
	c.broadcastIdle()
	c.Mu.Unlock()
	if l == nil {
		return
	}
	if relayed {
		<-l.done // the relay sees the server closed and destroys it
		return
	}
	l.giveBack(true)
}

// panicLockWait is how long the cleanup after a panic waits for a lock the panic may have
// left held.
const panicLockWait = time.Second

// tryLockFor takes mu within d, and reports whether it did.
func tryLockFor(mu *sync.Mutex, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !mu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// relayPanicked ends a lease whose relay panicked. The server and what was written to
// the client may be in any state: the server is destroyed, and the client gets XX000 and
// is closed. holdingW says whether this goroutine holds c.client.wmu.
func (l *Lease) relayPanicked(p any, holdingW bool) {
	c := l.c
	c.Log.Error("relay panic: closing the client and its server", "panic", p, "stack", string(debug.Stack()))
	if holdingW || tryLockFor(&c.Conn.WMu, panicLockWait) {
		// Drop what is buffered: it may end in the middle of a message.
		c.Conn.W.DropBuffered()
		c.Host.NoteError(protocol.CodeInternalError)
		_ = c.Conn.Net.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Conn.W.Write(protocol.AppendErrorResponse(nil, protocol.NewFatal(protocol.CodeInternalError,
			"internal error in cmpool while relaying the server's reply; the connection is closed")))
		_ = c.Conn.W.Flush()
		c.Conn.WMu.Unlock()
	}
	_ = c.Conn.Net.Close()
	_ = l.sc.NetConn.Close()
	if !tryLockFor(&c.Mu, panicLockWait) {
		c.Log.Error("relay panic left the client's lock held: its server is not returned")
		return
	}
	if c.Lease == l {
		c.Lease = nil
	}
	c.broadcastIdle()
	c.Mu.Unlock()
	if l.queryTimer != nil {
		l.queryTimer.Stop()
	}
	l.giveBack(true)
}
