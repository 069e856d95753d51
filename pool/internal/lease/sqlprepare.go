package lease

import (
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// SQL-level prepared statements outside session mode (see pool/internal/stmt's
// sqlprepare.go for the mapping). The client goroutine judges a PREPARE or EXECUTE
// (JudgePreparedSQL) before it needs a server; send plans it on the lease's server
// (planSQLCommand); the relay hides the replies to cmpool's own statements
// (relaySQLReply).

// JudgePreparedSQL judges q, a simple query outside session mode, for SQL-level
// prepared statements. It returns the error to answer q with, without a server; or nil,
// and then q goes to a server as usual, rewritten when it is sent if it is a PREPARE or
// an EXECUTE (c.SQLCommand).
func (c *Client) JudgePreparedSQL(q string) *protocol.Error {
	c.SQLCommand = nil
	if !c.Judge(q).G.MayUsePreparedSQL() {
		return nil // none of its words: PreparedSQLOf would say so after a scan of its own
	}
	p, ok := router.PreparedSQLOf(q)
	if !ok {
		return nil
	}
	switch p.Kind {
	case router.SQLUnparsed:
		// The server's grammar would refuse it too; it must not reach a server under the
		// client's own name.
		return protocol.NewError(protocol.CodeSyntaxError, p.Err)
	case router.SQLMultiple:
		pe := protocol.NewError(protocol.CodeFeatureNotSupported,
			"PREPARE, EXECUTE and DEALLOCATE must be sent as queries of their own in "+c.Mode.String()+" pooling mode")
		pe.Hint = "send each of these statements in a query string of its own, or use pool_mode = session"
		return pe
	case router.SQLPrepare:
		c.Mu.Lock()
		dup := c.Stmts.Has(p.Name)
		c.Mu.Unlock()
		if dup {
			return stmt.Duplicate(p.Name)
		}
		c.SQLCommand = &stmt.SQLCommand{Query: q, Prepare: true, Client: p.Name, Stmt: stmt.NewSQLStmt(p.Types, p.Body, c.Host.Statements().SchemaGen())}
	case router.SQLExecute:
		c.Mu.Lock()
		st, protocolLevel := c.Stmts.SQL(p.Name), c.Stmts.Has(p.Name)
		c.Mu.Unlock()
		if st == nil {
			if protocolLevel {
				pe := protocol.NewError(protocol.CodeFeatureNotSupported,
					"EXECUTE of a statement prepared through the extended protocol is not supported in "+c.Mode.String()+" pooling mode")
				pe.Hint = "run it with Bind and Execute, or prepare it with SQL PREPARE"
				return pe
			}
			return stmt.NotFound(p.Name)
		}
		c.SQLCommand = &stmt.SQLCommand{Query: q, Client: p.Name, Stmt: st, NameStart: p.NameStart, NameEnd: p.NameEnd, Plain: p.Plain}
	}
	return nil
}

// traitsText is the text whose traits (session.Traits) stand for q's: for an EXECUTE
// judged by JudgePreparedSQL, the statement it runs, so that a prepared SELECT costs no
// more than the SELECT; else q.
func (c *Client) traitsText(q string) string {
	if cmd := c.SQLCommand; cmd != nil && !cmd.Prepare && cmd.Query == q {
		return cmd.Stmt.Body
	}
	return q
}

// RouteText is the text a transaction that starts with simple query q is routed by: for
// an EXECUTE alone judged by JudgePreparedSQL, the statement it runs, as for a Bind of a
// protocol-level statement; else q.
func (c *Client) RouteText(q string) string {
	if cmd := c.SQLCommand; cmd != nil && cmd.Plain && cmd.Query == q {
		return cmd.Stmt.Body
	}
	return q
}

// planSQLCommand returns the Query to send on l for msg, the client's Query of text q:
// the rewrite of the PREPARE or EXECUTE JudgePreparedSQL judged, or msg itself.
func (l *Lease) planSQLCommand(q string, msg []byte) []byte {
	c := l.c
	cmd := c.SQLCommand
	c.SQLCommand = nil
	if cmd == nil || cmd.Query != q {
		return msg
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	// The rewrite names cmpool's statement, which another server may lack: no replay.
	l.segOK = false
	return l.sqlStmts.Command(nil, cmd, l.stmtScope(l.sentSeq))
}

// relaySQLReply handles a server message while replies to rewritten SQL-level statements
// are due: a CommandComplete of cmpool's own statement is dropped; a ReadyForQuery ends
// what was due in its Query. handled is false when the message is relayed as usual. The
// caller holds c.client.wmu.
func (l *Lease) relaySQLReply(fr protocol.Frame) (step relayStep, handled bool, err error) {
	c := l.c
	switch fr.Type {
	case 'C':
		c.Mu.Lock()
		hide := l.sqlStmts.CommandComplete(l.stmtScope(l.recvSeq + 1))
		c.Mu.Unlock()
		if !hide {
			return stepContinue, false, nil
		}
		if _, err := l.sc.Frames.Message(); err != nil {
			return stepFailed, true, err
		}
		return stepHidden, true, nil
	case 'Z':
		c.Mu.Lock()
		l.sqlStmts.Answered(l.recvSeq + 1)
		c.Mu.Unlock()
	}
	// An ErrorResponse goes to replyError, which ends what was due (sqlErrorLocked).
	return stepContinue, false, nil
}

// sqlErrorLocked runs at an ErrorResponse msg while replies to rewritten statements are
// due: the server skips the rest of the Query, so nothing more is due in it. The caller
// holds c.mu.
func (l *Lease) sqlErrorLocked(msg []byte) {
	s := l.stmtScope(l.recvSeq + 1)
	l.sqlStmts.Error(msg, s)
	l.sqlStmts.Answered(s.Segment)
}

// refuseParse returns the error for a client's Parse (statement name, text query) that
// cmpool refuses outside session mode, or nil: a name the client prepared with SQL
// PREPARE (42P05, as on a server), or a text that is itself PREPARE, EXECUTE or
// DEALLOCATE, whose names cmpool maps only in simple queries. The caller holds c.mu.
func (c *Client) refuseParse(name, query []byte) *protocol.Error {
	if len(name) > 0 && c.Stmts.SQL(string(name)) != nil {
		return stmt.Duplicate(string(name))
	}
	if !router.ContainsFold(query, "prepare") && !router.ContainsFold(query, "execute") && !router.ContainsFold(query, "deallocate") {
		return nil
	}
	q := string(query)
	kind, _ := router.CommandOf(q)
	_, found := router.PreparedSQLOf(q)
	if !found && kind != router.CommandDeallocate && kind != router.CommandDeallocateAll && kind != router.CommandPrepare && kind != router.CommandExecute {
		return nil
	}
	pe := protocol.NewError(protocol.CodeFeatureNotSupported,
		"SQL-level PREPARE, EXECUTE and DEALLOCATE are not supported through the extended query protocol in "+c.Mode.String()+" pooling mode")
	pe.Hint = "send them as simple queries (cmpool maps their names across server connections), use protocol-level prepared statements, or pool_mode = session"
	return pe
}
