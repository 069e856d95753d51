package pool

import (
	"context"
	"time"

	"github.com/cmlite/cmpool/protocol"
)

// Client-side timeouts: client_idle_timeout, idle_transaction_timeout and query_timeout.
// (client_login_timeout bounds startup; query_wait_timeout bounds waiting for a server;
// the server_* timeouts belong to the backend pools.)
//
// The idle timeouts are read deadlines on the client's socket. The relay arms one when a
// ReadyForQuery leaves the client idle, or idle in a transaction; the client goroutine
// disarms it when the next message arrives, and tells the two apart when it fires.

// armIdleTimeout sets the client's read deadline for the state it is left in by a
// ReadyForQuery with nothing outstanding: inTx tells idle in a transaction from idle.
func (c *Client) armIdleTimeout(inTx bool) {
	cfg := c.host.Config()
	d := cfg.ClientIdleTimeout
	if inTx {
		d = cfg.IdleTransactionTimeout
	}
	if d <= 0 {
		return
	}
	c.idleArmed.Store(true)
	_ = c.client.conn.SetReadDeadline(time.Now().Add(d))
	if c.closing.Load() {
		// A drain has begun: close at its deadline for this client (see requestClose).
		_ = c.client.conn.SetReadDeadline(time.Now().Add(time.Duration(max(0, c.closeAt.Load()-nanotime()))))
	}
}

// disarmIdleTimeout clears an idle deadline after the client sent something.
func (c *Client) disarmIdleTimeout() {
	if c.idleArmed.Swap(false) && !c.closing.Load() {
		_ = c.client.conn.SetReadDeadline(time.Time{})
	}
}

// idleTimeoutError is the error that ends a client whose idle deadline passed, or nil
// when the deadline was not an idle timeout.
func (c *Client) idleTimeoutError() *protocol.Error {
	if !c.idleArmed.Load() {
		return nil
	}
	c.mu.Lock()
	l := c.lease
	inTx := l != nil && l.pending == 0 && !l.unsynced && l.sc.TxStatus != 'I' || l == nil && c.beginDeferred
	busy := l != nil && (l.pending > 0 || l.unsynced)
	c.mu.Unlock()
	switch {
	case busy:
		return nil
	case inTx:
		return protocol.NewFatal(protocol.CodeIdleInTransactionTimeout,
			"terminating connection due to idle-in-transaction timeout (idle_transaction_timeout)")
	default:
		return protocol.NewFatal(protocol.CodeIdleSessionTimeout,
			"terminating connection due to idle timeout (client_idle_timeout)")
	}
}

// armQueryTimer starts query_timeout for the request just sent on l, when it is the only
// one outstanding (a pipelined request runs after the ones before it).
func (l *lease) armQueryTimer() {
	c := l.c
	d := c.host.Config().QueryTimeout
	c.mu.Lock()
	defer c.mu.Unlock()
	owed := 1 // the request just sent, and a deferred BEGIN sent ahead of it
	if l.hiddenBegin {
		owed++
	}
	if c.lease != l || l.pending != owed {
		return
	}
	if l.queryTimer == nil {
		l.queryTimer = time.AfterFunc(d, func() { l.queryTimedOut() })
		return
	}
	l.queryTimer.Reset(d)
}

// stopQueryTimer stops query_timeout once nothing is outstanding. The caller holds c.mu.
func (l *lease) stopQueryTimer() {
	if l.queryTimer != nil && l.pending == 0 {
		l.queryTimer.Stop()
	}
}

// queryTimedOut cancels the request running on l's server: the server then answers it
// with 57014, which reaches the client as usual.
func (l *lease) queryTimedOut() {
	c := l.c
	sent, err := c.cancelRunning(context.Background(), l, false)
	switch {
	case err != nil:
		c.log.Warn("query_timeout: cancel request failed", "error", err)
	case sent:
		c.log.Warn("query_timeout: cancelled the running query", "timeout", c.host.Config().QueryTimeout)
	}
}
