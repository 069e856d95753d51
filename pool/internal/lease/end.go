package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/cmlite/cmpool/protocol"
)

// clientGone ends a lease whose client can no longer be written to: the server may be
// mid-transaction or mid-result, so it is destroyed, and the client is closed.
func (l *Lease) clientGone() {
	c := l.c
	l.destroyLease()
	_ = c.Conn.Net.Close()
}

// destroyLease ends l by closing its server, which may be in any state.
func (l *Lease) destroyLease() {
	c := l.c
	c.Mu.Lock()
	if c.Lease == l {
		c.Lease = nil
	}
	c.broadcastIdle()
	c.Mu.Unlock()
	l.giveBack(true)
}

// giveBack is the one place a lease's server leaves it: it goes back to its pool, or is
// destroyed when destroy is set or a cancel sent to it is not settled (see cancel.go).
// It waits for a write to the server in progress, moves l to released or destroyed, gives
// a replica's slot back to the replica set, and on destroy stops query_timeout and adds the bytes l relayed to the pool's counters
// (a clean end has added them at its ReadyForQuery). A lease already over is left as it
// is: a panic's cleanup may come after the relay gave the server back. It does not
// change clientSession.lease: the caller does, when the lease is still the client's. The
// caller holds no lock.
func (l *Lease) giveBack(destroy bool) {
	c := l.c
	if !destroy {
		l.wmu.Lock()
		//lint:ignore SA2001 waiting for the writer to finish is the point
		l.wmu.Unlock()
		destroy = !l.sc.Cancels.Settle(settleTimeout)
	}
	c.Mu.Lock()
	if l.over() {
		c.Mu.Unlock()
		return
	}
	if destroy {
		l.to(leaseDestroyed)
	} else {
		l.to(leaseReleased)
	}
	l.releasePinLocked()
	c.broadcastIdle()
	c.Mu.Unlock()
	if l.replica >= 0 {
		l.rs.Done(l.replica)
	}
	if !destroy {
		l.pool.GiveBack(l.res, false)
		return
	}
	if l.queryTimer != nil {
		l.queryTimer.Stop()
	}
	l.flushBytes()
	l.pool.GiveBack(l.res, true)
}

// endsLease runs at each ReadyForQuery, after it was written to the client. It decides
// whether the server goes back to the pool: only when it is idle, every request has been
// answered and the mode allows it. The client's output is flushed before the lease ends,
// since after that the client goroutine may write to the client. What the ReadyForQuery
// does to the lease is decided by onReady and onEnd, under c.mu; the flush, which may
// block, is between them, with no lock held.
func (l *Lease) endsLease(status byte) (end, dead bool) {
	c := l.c
	c.Mu.Lock()
	ends := l.onReady(status)
	c.Mu.Unlock()
	if !ends {
		return false, false
	}
	if ferr := c.Conn.W.Flush(); ferr != nil {
		l.clientGone()
		return false, true
	}
	c.Mu.Lock()
	end = l.onEnd()
	c.Mu.Unlock()
	return end, false
}

// noteAnswer records the ReadyForQuery that answers one request on l, and the
// transaction status it reports. The caller holds c.mu.
func (l *Lease) noteAnswer(status byte) {
	l.sc.TxStatus = status
	l.recvSeq++
	if l.pending > 0 {
		l.pending--
	}
}

// onReady is what a ReadyForQuery relayed to the client does to l: the request it answers
// is counted, timers and deadlines follow what is still outstanding, and it reports
// whether the lease ends here (l is then ending: the client goroutine sends nothing on
// it). The caller holds c.mu.
func (l *Lease) onReady(status byte) (ends bool) {
	c := l.c
	l.noteAnswer(status)
	l.noteReady(status)
	if l.pending == 0 && !l.unsynced {
		l.stopQueryTimer()
		c.ArmIdleTimeout(status != 'I')
	}
	l.stmts.Answered(l.recvSeq)
	if l.queryTimeout > 0 && l.pending == 0 {
		// Idle, or idle in a transaction: the server owes nothing.
		_ = l.sc.NetConn.SetReadDeadline(time.Time{})
	}
	c.broadcastIdle()
	ends = l.pending == 0 && !l.unsynced && status == 'I' && (c.Mode != Session && !l.pinnedLocked() || c.Closing.Load())
	if ends && l.state == leaseRelaying {
		// The client's next message must not join this lease: it may belong elsewhere.
		l.to(leaseEnding)
	}
	return ends
}

// onEnd ends l, once the reply that ended it is flushed: it leaves the client (returning),
// or stays its lease while the relay reads settings back (syncing). It reports false when
// the client left meanwhile (endLease took the lease over). The caller holds c.mu.
func (l *Lease) onEnd() bool {
	c := l.c
	c.broadcastIdle()
	if l.state != leaseEnding {
		return false
	}
	if !l.executed {
		l.needLSN = false // only Parse, Describe or Close: nothing ran, nothing was written
	}
	c.Host.EndTransaction(l.needLSN)
	if len(l.track) > 0 || c.Mode != Session && l.untrackedChanges() {
		// The lease ends after syncLease has read the parameters back.
		l.to(leaseSyncing)
	} else {
		l.to(leaseReturning)
		c.Lease = nil
	}
	c.IdleSince.Store(l.readyAt) // read by noteReady in this endsLease: one clock read fewer
	if c.Closing.Load() {
		// Wake the client goroutine so it can say goodbye.
		_ = c.Conn.Net.SetReadDeadline(time.Now())
	}
	return true
}

// leaveClient moves l, ending after a read-back, to returning: it is no longer the
// client's lease, and the client goroutine may go on. The caller holds c.Mu.
func (l *Lease) leaveClient() {
	c := l.c
	l.to(leaseReturning)
	if c.Lease == l {
		c.Lease = nil
	}
	c.broadcastIdle()
}

// finishLease returns a clean server once no write or cancel is in progress on it. The
// lease is no longer cancellable (it is returning, or syncing), so no new cancel starts
// meanwhile; a server whose cancel is not answered is closed. Whoever ends l calls it,
// and nothing else changes l's state meanwhile.
func (l *Lease) finishLease() {
	c := l.c
	l.wmu.Lock()
	//lint:ignore SA2001 waiting for the writer to finish is the point
	l.wmu.Unlock()
	settled := l.sc.Cancels.Settle(settleTimeout)
	if l.state == leaseSyncing && !l.syncLease() || !settled {
		l.giveBack(true)
		return
	}
	cfg := c.Host.Config()
	c.Mu.Lock()
	// Session state that pinned the client, or that a statement may have left unchecked.
	pinState := l.pinned != nil || l.pinCandidate
	c.Mu.Unlock()
	if (l.resetNeeded || pinState) && !resetServer(l.sc, cfg.ServerConnectTimeout) {
		l.giveBack(true)
		return
	}
	if l.tempCheck && !l.resetNeeded && !pinState && c.Mode != Session && !l.dropTempObjects() {
		l.giveBack(true)
		return
	}
	if c.Mode == Session && cfg.ServerResetQuery != "-" {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ServerConnectTimeout)
		res, err := l.sc.Exec(ctx, cfg.ServerResetQuery)
		cancel()
		if err != nil || res.Err != nil || l.sc.TxStatus != 'I' {
			l.giveBack(true)
			return
		}
		l.sc.Set = make(map[string]string)
		l.sc.ConfiguredFor = 0
		l.sc.Prepared.Clear()
	}
	l.giveBack(false)
}

// refuseTransactionBlock handles a transaction left open in statement mode. The
// ReadyForQuery is withheld; the server is rolled back and the client gets an error and an
// idle ReadyForQuery. If more requests are queued behind this one, both ends are closed.
func (l *Lease) refuseTransactionBlock(status byte) {
	c := l.c
	pe := protocol.NewError(protocol.CodeFeatureNotSupported, "transaction blocks are not allowed in statement pooling mode")
	pe.Hint = "use pool_mode = transaction for this database, or run each statement on its own"
	c.Mu.Lock()
	l.noteAnswer(status)
	last := l.pending == 0 && !l.unsynced
	c.broadcastIdle()
	c.Mu.Unlock()
	if !last {
		pe.Severity = protocol.SeverityFatal
		l.relayFailedWith(pe)
		return
	}
	l.wmu.Lock()
	res, err := l.sc.Exec(context.Background(), "ROLLBACK")
	l.wmu.Unlock()
	c.Conn.WMu.Lock()
	_, _ = c.Conn.W.Write(protocol.AppendErrorResponse(nil, pe))
	_, _ = c.Conn.W.Write(protocol.AppendReadyForQuery(nil, 'I'))
	werr := c.Conn.W.Flush()
	c.Conn.WMu.Unlock()
	if werr != nil {
		l.clientGone()
		return
	}
	c.Mu.Lock()
	if l.pending > 0 || l.unsynced || c.Lease != l {
		// The client sent more while we rolled back: it cannot be told apart safely.
		c.Mu.Unlock()
		pe.Severity = protocol.SeverityFatal
		l.relayFailedWith(pe)
		return
	}
	l.to(leaseReturning)
	c.Lease = nil
	c.Mu.Unlock()
	if err != nil || res.Err != nil || l.sc.TxStatus != 'I' {
		l.giveBack(true)
		return
	}
	l.finishLease()
}

// relayFailed ends a lease whose server failed or was closed under it.
func (l *Lease) relayFailed(err error) {
	c := l.c
	c.Mu.Lock()
	abandoned, stopping := l.state == leaseAbandoned, l.state == leaseStopping
	abort := l.abortWith
	c.Mu.Unlock()
	if stopping && IsTimeout(err) {
		// The client goroutine stopped us to take the server back itself.
		return
	}
	if abort != nil && IsTimeout(err) {
		l.relayFailedWith(abort)
		return
	}
	if !abandoned && !stopping && !isBadServerMessage(err) && l.failedOnReplica(err) {
		// The replica failed under a read, which runs again elsewhere (retry.go).
		return
	}
	if len(l.heldErr) > 0 && !abandoned {
		// An error held for a replay that cannot happen: the client gets it first.
		c.Conn.WMu.Lock()
		_, _ = c.Conn.W.Write(l.heldErr)
		c.Conn.WMu.Unlock()
		l.heldErr = l.heldErr[:0]
	}
	if l.queryTimeout > 0 && IsTimeout(err) {
		// The server may be hung or unreachable; its state is unknown, so it is closed,
		// and so is the client, whose transaction is gone with it.
		c.Log.Warn("query_timeout: server did not answer, even to a cancel request", "waited", l.queryTimeout, "backend", l.pool.Name)
		l.relayFailedWith(protocol.NewFatal(protocol.CodeQueryCanceled,
			fmt.Sprintf("query_timeout: the server did not answer within %s", l.queryTimeout)))
		return
	}
	if isBadServerMessage(err) {
		c.Log.Error("server broke the protocol: closing it and its client", "error", err)
		l.relayFailedWith(protocol.NewFatal(protocol.CodeProtocolViolation, "server sent an invalid message: "+err.Error()))
		return
	}
	if !abandoned {
		c.Log.Warn("server connection lost", "error", err)
	}
	l.relayFailedWith(protocol.NewFatal(protocol.CodeConnectionFailure, "server connection lost: "+err.Error()))
}

// relayFailedWith destroys the lease's server and, unless the client already left, sends
// it pe and closes it. The error is written while the relay still owns the client writer.
func (l *Lease) relayFailedWith(pe *protocol.Error) {
	c := l.c
	c.Mu.Lock()
	abandoned := l.state == leaseAbandoned
	c.Mu.Unlock()
	if !abandoned {
		c.Conn.WMu.Lock()
		_ = c.Conn.Net.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Conn.W.Write(protocol.AppendErrorResponse(nil, pe))
		_ = c.Conn.W.Flush()
		c.Conn.WMu.Unlock()
	}
	l.destroyLease()
	if !abandoned {
		_ = c.Conn.Net.Close()
	}
}

// EndLease runs when the client leaves: a clean server goes back (session mode, after
// the reset query); a busy one is closed, never reused dirty.
func (c *Client) EndLease() {
	c.ReleasePinReservation()
	c.EnsureRelay() // it stops the relay below, or sees the server closed
	c.Mu.Lock()
	l := c.Lease
	if l == nil {
		c.Mu.Unlock()
		return
	}
	if l.state == leaseSyncing || l.over() {
		// The relay is ending this lease itself (reading parameters back, or moving the
		// request to the primary, which gives this server back first): let it, then look
		// again.
		c.Mu.Unlock()
		<-l.done
		c.EndLease()
		return
	}
	c.Lease = nil
	clean := l.pending == 0 && !l.unsynced && l.sc.TxStatus == 'I'
	if clean {
		l.to(leaseStopping)
		_ = l.sc.NetConn.SetReadDeadline(time.Now())
	} else {
		l.to(leaseAbandoned)
		_ = l.sc.NetConn.Close()
	}
	c.Mu.Unlock()
	<-l.done
	c.Mu.Lock()
	stopped := l.state == leaseStopping
	if stopped {
		l.to(leaseReturning)
	}
	c.Mu.Unlock()
	if stopped {
		_ = l.sc.NetConn.SetReadDeadline(time.Time{})
		l.finishLease()
	}
}
