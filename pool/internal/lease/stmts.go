package lease

import (
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Prepared statements: the client's names (clientSession.stmts) and each lease's plan
// (lease.stmts) are kept by pool/internal/stmt; these are the session's and the lease's
// entry points to them.

// StatementJudge returns the judge of the statement registry: a statement's traits.
func StatementJudge(cl *router.Classifier) func(string) *session.Traits {
	return func(q string) *session.Traits {
		t := withSettingEffects(cl, q, traitsOf(q))
		t.TempObject = TempObjectOf(q) != ""
		t.MayRelease = router.MayReleaseSession(q)
		return &t
	}
}

// stmtScope is what l plans statements in, for segment seg.
func (l *Lease) stmtScope(seg uint64) stmt.Scope {
	c := l.c
	return stmt.Scope{Names: &c.Stmts, Server: l.sc.Prepared, Registry: c.Host.Statements(), Counters: &l.pool.Counters.Stmt, Segment: seg}
}

// planExtended returns, appended to out, what to send the server for the client's Parse,
// Bind, Describe or Close msg, and records the replies to expect. Outside session mode a
// Parse that creates a temporary object (with pinning off), or that names a statement
// the client prepared with SQL PREPARE, is refused in its place. The caller holds c.mu.
func (l *Lease) planExtended(msg []byte, out []byte) (_ []byte, warn bool, err error) {
	c := l.c
	s := l.stmtScope(l.sentSeq)
	if msg[0] == 'P' && c.Mode != Session {
		if name, query, _, ok := protocol.ParseParse(msg[protocol.HeaderLen:]); ok {
			if what := TempObjectOf(query); what != "" && !c.Pin.On {
				return l.stmts.Refuse(out, name, c.Mode.RefuseTempObject(what), s), false, nil
			}
			if pe := c.refuseParse(name, query); pe != nil {
				return l.stmts.Refuse(out, name, pe, s), false, nil
			}
		}
	}
	out, traits, err := l.stmts.Message(out, msg, s)
	if traits != nil && l.refusePinLocked(traits, traits.TempObject) {
		// After the Bind, a Parse the server fails at once stands for the refusal: the
		// rest of the batch is skipped to Sync, and nothing of the statement runs.
		return l.stmts.Refuse(out, refusedPinName, c.Pin.Group.refusal(), s), false, err
	}
	if traits != nil {
		warn = l.applyTraits(*traits)
		l.scheduleRestore(traits.Resets, l.sentSeq+1) // the segment this Bind is in
	}
	return out, warn, err
}

// refusedPinName names the refusal that stands for a Bind refused by max_pinned (a named
// one, so that the client's unnamed statement stays).
var refusedPinName = []byte("max_pinned")

// replyParseComplete decides what the client sees for a ParseComplete; nil hides it.
func (l *Lease) replyParseComplete(msg []byte) []byte {
	c := l.c
	c.Mu.Lock()
	show := l.stmts.ParseComplete()
	c.Mu.Unlock()
	if !show {
		return nil
	}
	return msg
}

// replyCloseComplete decides what the client sees for a CloseComplete; nil hides it.
func (l *Lease) replyCloseComplete(msg []byte) []byte {
	c := l.c
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return l.stmts.CloseComplete(msg)
}

// replyError runs at an ErrorResponse (see stmt.Plan.Error) and returns the message to
// send.
func (l *Lease) replyError(msg []byte) []byte {
	c := l.c
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if l.sqlStmts.Pending() {
		l.sqlErrorLocked(msg) // sqlprepare.go
	}
	return l.stmts.Error(msg, l.stmtScope(l.recvSeq))
}

// DeferParse holds a named Parse that arrives while the client has no server (see
// stmt.Names.Defer), and reports whether it did.
func (c *Client) DeferParse(msg []byte) bool {
	if !stmt.Deferrable(msg) || c.CurrentLease() != nil {
		return false
	}
	c.Stmts.Defer(msg)
	return true
}

// AnswerDeferred answers held Parses without a server, as a server would; a Sync then
// gets ReadyForQuery.
func (c *Client) AnswerDeferred(sync bool) error {
	c.Mu.Lock()
	out, failed := c.Stmts.AnswerDeferred(nil, c.Host.Statements(), c.Host.StatementCounters(), func(name, query []byte) *protocol.Error {
		if c.Mode == Session {
			return nil
		}
		if what := TempObjectOf(query); what != "" && !c.Pin.On {
			return c.Mode.RefuseTempObject(what)
		}
		return c.refuseParse(name, query)
	})
	c.Mu.Unlock()
	if failed && !sync {
		c.Discarding = true
	}
	if sync {
		out = protocol.AppendReadyForQuery(out, c.LocalStatus())
	}
	return c.Conn.WriteLocal(out)
}

// sendDeferred sends held Parses on l, ahead of the message that needed a server.
func (l *Lease) sendDeferred() error {
	c := l.c
	for _, msg := range c.Stmts.Deferred() {
		c.Mu.Lock()
		l.account('P')
		c.Mu.Unlock()
		l.recordForRetry('P', msg)
		if err := c.send(l, msg); err != nil {
			return err
		}
	}
	c.Stmts.DropDeferred()
	return nil
}
