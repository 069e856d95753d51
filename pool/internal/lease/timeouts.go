package lease

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

// ArmIdleTimeout sets the client's read deadline for the state it is left in by a
// ReadyForQuery with nothing outstanding: inTx tells idle in a transaction from idle.
func (c *Client) ArmIdleTimeout(inTx bool) {
	cfg := c.Host.Config()
	d := cfg.ClientIdleTimeout
	if inTx {
		d = cfg.IdleTransactionTimeout
	}
	if d <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	c.idleDeadline.Store(deadline.UnixNano())
	c.idleArmed.Store(true)
	_ = c.Conn.Net.SetReadDeadline(deadline)
	if c.Closing.Load() {
		// A drain has begun: close at its deadline for this client (see requestClose).
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(time.Duration(max(0, c.CloseAt.Load()-Nanotime()))))
	}
}

// DisarmIdleTimeout clears an idle deadline after the client sent something.
func (c *Client) DisarmIdleTimeout() {
	if c.idleArmed.Swap(false) && !c.Closing.Load() {
		_ = c.Conn.Net.SetReadDeadline(time.Time{})
	}
}

// RestoreReadDeadline sets the client's read deadline back to what the timeouts want
// (the drain's, an idle timeout's, or none) after something else moved it: the client
// goroutine calls it when a wake-up it asked for (parking, in pool) is not used.
func (c *Client) RestoreReadDeadline() {
	switch {
	case c.Closing.Load():
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(time.Duration(max(0, c.CloseAt.Load()-Nanotime()))))
	case c.idleArmed.Load():
		_ = c.Conn.Net.SetReadDeadline(time.Unix(0, c.idleDeadline.Load()))
	default:
		_ = c.Conn.Net.SetReadDeadline(time.Time{})
	}
}

// IdleArmed reports whether an idle timeout is the client's read deadline.
func (c *Client) IdleArmed() bool { return c.idleArmed.Load() }

// IdleTimeoutError is the error that ends a client whose idle deadline passed, or nil
// when the deadline was not an idle timeout.
func (c *Client) IdleTimeoutError() *protocol.Error {
	if !c.idleArmed.Load() {
		return nil
	}
	c.Mu.Lock()
	l := c.Lease
	inTx := l != nil && l.pending == 0 && !l.unsynced && l.sc.TxStatus != 'I' || l == nil && c.BeginDeferred
	busy := l != nil && (l.pending > 0 || l.unsynced)
	c.Mu.Unlock()
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
func (l *Lease) armQueryTimer() {
	c := l.c
	d := c.Host.Config().QueryTimeout
	c.Mu.Lock()
	defer c.Mu.Unlock()
	owed := 1 // the request just sent, and a deferred BEGIN sent ahead of it
	if l.hiddenBegin {
		owed++
	}
	if c.Lease != l || l.pending != owed {
		return
	}
	if l.queryTimer == nil {
		l.queryTimer = time.AfterFunc(d, func() { l.queryTimedOut() })
		return
	}
	l.queryTimer.Reset(d)
}

// stopQueryTimer stops query_timeout once nothing is outstanding. The caller holds c.mu.
func (l *Lease) stopQueryTimer() {
	if l.queryTimer != nil && l.pending == 0 {
		l.queryTimer.Stop()
	}
}

// queryTimedOut cancels the request running on l's server: the server then answers it
// with 57014, which reaches the client as usual.
func (l *Lease) queryTimedOut() {
	c := l.c
	sent, err := c.CancelRunning(context.Background(), l, false)
	switch {
	case err != nil:
		c.Log.Warn("query_timeout: cancel request failed", "error", err)
	case sent:
		c.Log.Warn("query_timeout: cancelled the running query", "timeout", c.Host.Config().QueryTimeout)
	}
}

// TransactionStart is when (Nanotime) the transaction the client has open on its server
// began, from its first request, or 0 when it has none open (transaction_timeout).
func (c *Client) TransactionStart() int64 {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if l := c.Lease; l != nil && l.open() {
		return l.xStart
	}
	return 0
}

// AbortRunning ends the client's lease while its server is working on a request
// (transaction_timeout): the relay's read of the server is cut short, so that the relay
// closes the server and sends the client pe and closes it, and a cancel request stops
// what the server was running. It reports false, doing nothing, when no request is
// outstanding.
func (c *Client) AbortRunning(ctx context.Context, pe *protocol.Error) bool {
	c.Mu.Lock()
	l := c.Lease
	if !c.cancellableLocked(l) || l.state != leaseRelaying {
		c.Mu.Unlock()
		return false
	}
	l.abortWith = pe
	sc, bp := l.sc, l.pool
	sc.Cancels.Add()
	c.Mu.Unlock()
	_ = sc.NetConn.SetReadDeadline(time.Now())
	_ = sc.Cancel(ctx, &bp.Cancels, false)
	return true
}
