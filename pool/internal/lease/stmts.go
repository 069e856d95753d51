package pool

import (
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Prepared statements: the client's names (clientSession.stmts) and each lease's plan
// (lease.stmts) are kept by pool/internal/stmt; these are the session's and the lease's
// entry points to them.

// statementJudge returns the judge of the statement registry: a statement's traits.
func statementJudge(cl *router.Classifier) func(string) *session.Traits {
	return func(q string) *session.Traits {
		t := withSettingEffects(cl, q, traitsOf(q))
		return &t
	}
}

// stmtScope is what l plans statements in, for segment seg.
func (l *lease) stmtScope(seg uint64) stmt.Scope {
	c := l.c
	return stmt.Scope{Names: &c.stmts, Server: l.sc.Prepared, Registry: c.host.Statements(), Counters: &l.pool.Counters.Stmt, Segment: seg}
}

// planExtended returns, appended to out, what to send the server for the client's Parse,
// Bind, Describe or Close msg, and records the replies to expect. Outside session mode a
// Parse that creates a temporary object is refused in its place. The caller holds c.mu.
func (l *lease) planExtended(msg []byte, out []byte) (_ []byte, warn bool, err error) {
	c := l.c
	s := l.stmtScope(l.sentSeq)
	if msg[0] == 'P' && c.mode != ModeSession {
		if name, query, _, ok := protocol.ParseParse(msg[protocol.HeaderLen:]); ok {
			if what := tempObjectOf(query); what != "" {
				return l.stmts.Refuse(out, name, c.mode.refuseTempObject(what), s), false, nil
			}
		}
	}
	out, traits, err := l.stmts.Message(out, msg, s)
	if traits != nil {
		warn = l.applyTraits(*traits)
		l.scheduleRestore(traits.Resets, l.sentSeq+1) // the segment this Bind is in
	}
	return out, warn, err
}

// replyParseComplete decides what the client sees for a ParseComplete; nil hides it.
func (l *lease) replyParseComplete(msg []byte) []byte {
	c := l.c
	c.mu.Lock()
	show := l.stmts.ParseComplete()
	c.mu.Unlock()
	if !show {
		return nil
	}
	return msg
}

// replyCloseComplete decides what the client sees for a CloseComplete; nil hides it.
func (l *lease) replyCloseComplete(msg []byte) []byte {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.stmts.CloseComplete(msg)
}

// replyError runs at an ErrorResponse (see stmt.Plan.Error) and returns the message to
// send.
func (l *lease) replyError(msg []byte) []byte {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.stmts.Error(msg, l.stmtScope(l.recvSeq))
}

// deferParse holds a named Parse that arrives while the client has no server (see
// stmt.Names.Defer), and reports whether it did.
func (c *Client) deferParse(msg []byte) bool {
	if !stmt.Deferrable(msg) || c.currentLease() != nil {
		return false
	}
	c.stmts.Defer(msg)
	return true
}

// answerDeferred answers held Parses without a server, as a server would; a Sync then
// gets ReadyForQuery.
func (c *Client) answerDeferred(sync bool) error {
	c.mu.Lock()
	out, failed := c.stmts.AnswerDeferred(nil, c.host.Statements(), c.host.StatementCounters(), func(query []byte) *protocol.Error {
		if what := tempObjectOf(query); what != "" && c.mode != ModeSession {
			return c.mode.refuseTempObject(what)
		}
		return nil
	})
	c.mu.Unlock()
	if failed && !sync {
		c.discarding = true
	}
	if sync {
		out = protocol.AppendReadyForQuery(out, c.localStatus())
	}
	return c.client.writeLocal(out)
}

// sendDeferred sends held Parses on l, ahead of the message that needed a server.
func (l *lease) sendDeferred() error {
	c := l.c
	for _, msg := range c.stmts.Deferred() {
		c.mu.Lock()
		l.account('P')
		c.mu.Unlock()
		l.recordForRetry('P', msg)
		if err := c.send(l, msg); err != nil {
			return err
		}
	}
	c.stmts.DropDeferred()
	return nil
}
