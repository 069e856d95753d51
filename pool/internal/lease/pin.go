package lease

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Session pinning, in transaction and statement modes.
//
// Some session state cannot follow a client to another server: session advisory locks,
// WITH HOLD cursors and temporary objects. With pin_session_state (the default), a client
// that leaves such state on its server keeps that server, as in session mode, until the
// state is gone; then it goes back to transaction pooling.
//
// What may leave state is noticed by statement (session.Traits: Pins, a temporary object,
// or code cmpool cannot see), and the lease becomes a pin candidate. The server decides:
// at the ReadyForQuery that leaves the lease idle with nothing outstanding, before the
// client sees it, the relay moves the lease to syncing (the client goroutine sends
// nothing meanwhile) and asks the server in one round trip what it holds
// (session.PinCheckQuery). The client is pinned iff anything remains; the reasons are kept
// for SHOW CLIENTS. A pinned lease is checked again after a statement that may release
// state (an unlock, CLOSE, DISCARD, DROP, RESET, or code cmpool cannot see), not after
// every transaction.
//
// A pool (database, user) has at most max_pinned pinned clients: a slot is taken when a
// statement that pins is sent (or reserved before a simple query gets a server), and
// given back when the check finds nothing, or when the lease ends. A statement that
// would pin one client too many is refused with 53400 before it reaches the server.
// When a pinned client leaves, its server is reset with DISCARD ALL before reuse
// (finishLease), or closed if that fails.

// PinPolicy is how a client's session state pins it to its server outside session mode.
type PinPolicy struct {
	// On is pin_session_state. Off, session advisory locks and WITH HOLD cursors get a
	// warning and a reset, and temporary objects are refused.
	On bool
	// Group counts the pinned clients of the client's pool; set when On.
	Group *PinGroup
}

// PinGroup counts the pinned clients of one pool (database, user) against max_pinned.
type PinGroup struct {
	Database, User string
	max            atomic.Int64
	pinned         atomic.Int64 // slots taken: pinned leases, and reservations
	refused        atomic.Int64
}

// NewPinGroup returns an empty group allowing max pinned clients.
func NewPinGroup(database, user string, max int) *PinGroup {
	g := &PinGroup{Database: database, User: user}
	g.max.Store(int64(max))
	return g
}

// SetMax changes max_pinned (a reload); clients pinned beyond it stay pinned.
func (g *PinGroup) SetMax(n int) { g.max.Store(int64(n)) }

// Max is max_pinned.
func (g *PinGroup) Max() int { return int(g.max.Load()) }

// Pinned is how many of the pool's clients are pinned now (or about to be: their
// statement that pins is on its way).
func (g *PinGroup) Pinned() int { return int(g.pinned.Load()) }

// Refused counts statements refused because the pool had max_pinned pinned clients.
func (g *PinGroup) Refused() int64 { return g.refused.Load() }

// reserve takes a slot if fewer than max are taken.
func (g *PinGroup) reserve() bool {
	for {
		n := g.pinned.Load()
		if n >= g.max.Load() {
			return false
		}
		if g.pinned.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (g *PinGroup) release() { g.pinned.Add(-1) }

// refusal is the error for a statement that would pin one client too many.
func (g *PinGroup) refusal() *protocol.Error {
	pe := protocol.NewError(protocol.CodeConfigurationLimitExceeded,
		fmt.Sprintf("max_pinned (%d) reached for pool %s/%s: this statement would pin the client to its server connection", g.Max(), g.Database, g.User))
	pe.Hint = "session advisory locks, temporary tables and WITH HOLD cursors pin a client to a server until released; release them in other clients, raise max_pinned, or use pool_mode = session"
	return pe
}

// pinSlotLocked reports whether a statement that pins may go on lease l (nil: the client
// has no server yet): l or the client already holds a slot, or one is free and is
// reserved for the client. A refusal is counted. The client goroutine calls it, holding
// c.Mu when l is not nil.
func (c *Client) pinSlotLocked(l *Lease) bool {
	if c.pinReserved || l != nil && l.pinSlot {
		return true
	}
	if c.Pin.Group.reserve() {
		c.pinReserved = true
		return true
	}
	c.Pin.Group.refused.Add(1)
	return false
}

// SessionStateRefusal judges a simple query before it gets a server, outside session
// mode: it returns the error that refuses it, or nil. Without pinning, a temporary object
// is refused (0A000). With pinning, a statement that would pin the client is refused
// (53400) when the pool has max_pinned pinned clients and the client has no server: with
// one, send refuses it on the server, which ends a transaction block as an error does.
func (c *Client) SessionStateRefusal(q string) *protocol.Error {
	if c.Mode == Session {
		return nil
	}
	if !c.Pin.On {
		if what := c.Judge(q).TempObject(); what != "" {
			return c.Mode.RefuseTempObject(what)
		}
		return nil
	}
	if j := c.Judge(q); c.pinReserved || !j.G.PinsSession() && j.TempObject() == "" {
		return nil
	}
	c.Mu.Lock()
	// With a server (or a deferred BEGIN, whose transaction the refusal must abort),
	// send judges it.
	ok := c.Lease != nil || c.BeginDeferred || c.pinSlotLocked(nil)
	c.Mu.Unlock()
	if ok {
		return nil
	}
	return c.Pin.Group.refusal()
}

// pinRefusalQuery returns the Query message sent in place of a simple query refused by
// max_pinned on a server the client holds: it fails with the refusal, so that the server
// aborts a transaction block as it would after any error, and the client gets the error
// and the ReadyForQuery from the server.
func pinRefusalQuery(pe *protocol.Error) []byte {
	q := "DO $cmpool$BEGIN RAISE EXCEPTION USING ERRCODE = '" + pe.Code + "', MESSAGE = " +
		router.QuoteLiteral(pe.Message) + ", HINT = " + router.QuoteLiteral(pe.Hint) + "; END$cmpool$"
	b, _ := (&pgproto3.Query{String: q}).Encode(nil)
	return b
}

// refusePinLocked reports whether a statement with traits t must be refused on l by
// max_pinned: it pins (temp: it creates a temporary object) and no slot is free. The
// client goroutine calls it, holding c.Mu.
func (l *Lease) refusePinLocked(t *session.Traits, temp bool) bool {
	c := l.c
	if !c.Pin.On || c.Mode == Session || !t.Pins && !temp {
		return false
	}
	return !c.pinSlotLocked(l)
}

// notePinTraits records, in applyTraits, what a statement sent on l may do to the session
// state that pins. The caller holds c.Mu.
func (l *Lease) notePinTraits(t *session.Traits) {
	c := l.c
	if t.Pins || t.TempObject || t.MentionsTemp || t.Untracked || len(t.SettingFuncs) > 0 ||
		l.pinned != nil && t.MayRelease {
		l.pinCandidate = true
		l.pinWatch.Store(true)
	}
	if l.pinCandidate && c.pinReserved && !l.pinSlot {
		c.pinReserved = false
		l.pinSlot = true
	}
}

// checkPin runs at a ReadyForQuery with status idle of a pin candidate, before the client
// sees it (the relay holds c.Conn.WMu): when the server owes nothing more, it asks the
// server what session state it holds, and pins or unpins the client. It reports whether
// it read from the server (the ReadyForQuery read before is then overwritten). An error
// means the server cannot be trusted.
func (l *Lease) checkPin() (ran bool, err error) {
	c := l.c
	c.Mu.Lock()
	if l.pending != 1 || l.unsynced || l.state != leaseRelaying || c.Lease != l {
		c.Mu.Unlock()
		return false, nil // checked at a later ReadyForQuery
	}
	l.to(leaseSyncing)
	c.Mu.Unlock()

	l.wmu.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), c.Host.Config().ServerConnectTimeout)
	res, err := l.sc.Exec(ctx, session.PinCheckQuery)
	cancel()
	l.wmu.Unlock()
	reasons, ok := session.PinReasons(res.Row)
	if err == nil && l.sc.TxStatus != 'I' {
		err = fmt.Errorf("%w: session state check left the server in transaction status %q", errBadServerMessage, l.sc.TxStatus)
	}
	if err == nil && !ok {
		// The server would not say (res.Err): keep the client pinned, to be safe; the
		// server is reset when the client leaves.
		c.Log.Warn("could not check session state; the client stays pinned", "server_error", res.Err)
		reasons = []string{session.PinUnknown}
	}

	c.Mu.Lock()
	defer c.Mu.Unlock()
	l.to(leaseRelaying)
	c.broadcastIdle()
	if err != nil {
		return true, err
	}
	l.pinCandidate = false
	l.pinWatch.Store(false)
	l.tempCheck = false
	switch {
	case reasons != nil:
		if !l.pinSlot {
			// Pinned by something no statement showed (a function, a DO block): over
			// max_pinned if need be, since the state is there already.
			l.pinSlot = true
			c.Pin.Group.pinned.Add(1)
		}
		if l.pinned == nil {
			c.Log.Debug("client pinned to its server", "reasons", reasons)
		}
		l.pinned = reasons
	case l.pinSlot:
		if l.pinned != nil {
			c.Log.Debug("client unpinned")
		}
		l.pinned = nil
		l.pinSlot = false
		c.Pin.Group.release()
	}
	return true, nil
}

// releasePinLocked gives back l's slot as its server leaves it. The caller holds c.Mu.
func (l *Lease) releasePinLocked() {
	if l.pinSlot {
		l.pinSlot = false
		l.c.Pin.Group.release()
	}
	l.pinned = nil
}

// ReleasePinReservation gives back a slot reserved for a statement that never reached a
// server. The client goroutine calls it when the statement failed before it got a server
// (a failed wait, say), and as the client leaves.
func (c *Client) ReleasePinReservation() {
	if c.pinReserved {
		c.pinReserved = false
		c.Pin.Group.release()
	}
}

// DiscardPinnedLocked prepares a DISCARD ALL of a pinned client for its server: on a
// direct connection it releases advisory locks, closes cursors and drops temporary
// objects, so the client's server runs it, as in session mode (the check that follows
// unpins the client). The client's prepared statements and settings are forgotten as the
// server forgets them, and the server is reset again when the lease ends, since what cmpool
// recorded of its settings no longer holds. It reports false when the client is not
// pinned: cmpool answers DISCARD ALL itself then. The caller holds c.Mu.
func (c *Client) DiscardPinnedLocked() bool {
	l := c.Lease
	if c.Mode == Session || l == nil || l.pinned == nil {
		return false
	}
	c.Stmts.ForgetAll()
	l.sc.Prepared.Clear()
	c.Settings.Discard()
	l.resetNeeded = true
	return true
}

// PinnedLocked returns the session state that pins the client to its server (nil: none),
// shared and read only. The caller holds c.Mu.
func (c *Client) PinnedLocked() []string {
	if c.Lease == nil {
		return nil
	}
	return c.Lease.pinned
}

// pinnedLocked reports whether l keeps its server past the transaction. The caller holds
// c.Mu.
func (l *Lease) pinnedLocked() bool { return l.pinned != nil }
