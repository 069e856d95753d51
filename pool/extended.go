package pool

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// This file maps clients' named prepared statements onto shared server-side statements
// (see prepared.go) and answers the SQL commands that manage them.

var errMalformed = protocol.NewFatal(protocol.CodeProtocolViolation, "malformed extended-protocol message")

// planExtended returns, appended to out, what to send the server for the client's Parse,
// Bind, Describe or Close msg, and records the replies to expect. The caller holds c.mu.
func (c *clientSession) planExtended(l *lease, msg []byte, out []byte) (_ []byte, warn bool, err error) {
	out, t, err := c.planExtendedMsg(l, msg, out)
	if t != nil {
		warn = l.applyTraits(*t)
		l.scheduleRestore(t.resets, l.sentSeq+1) // the segment this Bind is in
	}
	return out, warn, err
}

// planExtendedMsg does planExtended's work; it also returns the traits of a statement
// being bound, if any.
func (c *clientSession) planExtendedMsg(l *lease, msg []byte, out []byte) ([]byte, *queryTraits, error) {
	typ, body := msg[0], msg[protocol.HeaderLen:]
	sc := l.sc
	seg := l.sentSeq
	counters := &l.pool.counters
	switch typ {
	case 'P':
		counters.clientParses.Add(1)
		name, query, types, ok := protocol.ParseParse(body)
		if !ok {
			return out, nil, errMalformed
		}
		if c.mode != ModeSession {
			if what := tempObjectOf(query); what != "" {
				return c.refuseParse(l, name, what, out), nil, nil
			}
		}
		if len(name) == 0 {
			// The unnamed statement is the client's too: keep it, so that a Bind in a
			// later transaction (on whatever server) binds this client's statement.
			c.unnamed = append(c.unnamed[:0], msg...)
			c.unnamedGen++
			if string(query) != c.unnamedText {
				c.unnamedText = string(query)
				c.unnamedTraits = withSettingEffects(c.srv.classifier, c.unnamedText, traitsOf(c.unnamedText))
			}
			sc.UnnamedOwner, sc.UnnamedGen = c.id, c.unnamedGen
			l.parses.push(inflight{action: replyForward, segment: seg})
			counters.serverParses.Add(1)
			return append(out, msg...), nil, nil
		}
		if existing := c.stmts[string(name)]; existing != nil {
			// Make the server raise 42P05 in the right place: prepare the existing
			// statement there if needed, then Parse its name again.
			out = c.ensurePrepared(l, existing, out)
			l.parses.push(inflight{action: replyDupStatement, segment: seg, stmt: existing, client: string(name)})
			return protocol.AppendParse(out, existing.name, "SELECT 1", []byte{0, 0}), nil, nil
		}
		stmt := c.srv.stmts.get(string(query), types)
		cname := string(name)
		c.stmts[cname] = stmt
		if preparedOf(sc).has(stmt) {
			l.closes.push(inflight{action: replyAsParse, segment: seg, stmt: stmt, client: cname})
			return protocol.AppendClose(out, 'S', noopStmtName), nil, nil
		}
		out = c.evictFor(l, stmt, out)
		l.parses.push(inflight{action: replyForward, segment: seg, stmt: stmt, client: cname})
		counters.serverParses.Add(1)
		return append(out, stmt.parse...), nil, nil

	case 'B':
		counters.binds.Add(1)
		portal, rest, ok := protocol.CString(body)
		if !ok {
			return out, nil, errMalformed
		}
		name, rest, ok := protocol.CString(rest)
		if !ok {
			return out, nil, errMalformed
		}
		if len(name) == 0 {
			out = c.ensureUnnamed(l, out)
			return append(out, msg...), &c.unnamedTraits, nil
		}
		stmt := c.lookupForUse(name)
		if stmt == nil {
			return append(out, msg...), nil, nil
		}
		out = c.ensurePrepared(l, stmt, out)
		if string(name) != c.boundName {
			c.boundName = string(name)
		}
		l.bound = append(l.bound, boundStmt{stmt: stmt, client: c.boundName, segment: l.sentSeq})
		out = protocol.AppendBind(out, portal, stmt.name, rest)
		return out, &stmt.traits, nil

	case 'D':
		if len(body) < 2 {
			return out, nil, errMalformed
		}
		name, _, ok := protocol.CString(body[1:])
		if !ok {
			return out, nil, errMalformed
		}
		if body[0] != 'S' {
			return append(out, msg...), nil, nil
		}
		if len(name) == 0 {
			out = c.ensureUnnamed(l, out)
			return append(out, msg...), nil, nil
		}
		stmt := c.lookupForUse(name)
		if stmt == nil {
			return append(out, msg...), nil, nil
		}
		out = c.ensurePrepared(l, stmt, out)
		out = protocol.AppendDescribe(out, 'S', stmt.name)
		return out, nil, nil

	case 'C':
		if len(body) < 2 {
			return out, nil, errMalformed
		}
		name, _, ok := protocol.CString(body[1:])
		if !ok {
			return out, nil, errMalformed
		}
		l.closes.push(inflight{action: replyForward, segment: seg})
		if body[0] == 'S' && len(name) == 0 {
			c.unnamed = c.unnamed[:0]
			sc.UnnamedOwner = 0
		}
		if body[0] == 'S' && len(name) > 0 {
			// The server's copy may serve other clients: only the mapping goes.
			delete(c.stmts, string(name))
			return protocol.AppendClose(out, 'S', noopStmtName), nil, nil
		}
		return append(out, msg...), nil, nil
	}
	return append(out, msg...), nil, nil
}

// deferParse holds a named Parse that arrives while the client has no server. A
// Parse+Sync (libpq's PQprepare, pgbench -M prepared) is then answered without taking a
// server from the pool, so a client preparing statements never waits behind, or blocks,
// clients in transactions. Anything else sends the held Parses first, in order. The cost:
// a statement that does not parse fails at its first Bind rather than at Parse.
func (c *clientSession) deferParse(msg []byte) bool {
	name, _, _, ok := protocol.ParseParse(msg[protocol.HeaderLen:])
	if !ok || len(name) == 0 || c.currentLease() != nil {
		return false
	}
	c.deferred = append(c.deferred, bytes.Clone(msg))
	return true
}

// answerDeferred answers held Parses without a server, as a server would: each maps the
// name, or fails with 42P05 if the name is taken, which skips the rest; a Sync then gets
// ReadyForQuery.
func (c *clientSession) answerDeferred(sync bool) error {
	var out []byte
	failed := false
	c.mu.Lock()
	for _, msg := range c.deferred {
		name, query, types, _ := protocol.ParseParse(msg[protocol.HeaderLen:])
		if what := tempObjectOf(query); what != "" && c.mode != ModeSession {
			out = protocol.AppendErrorResponse(out, c.refuseTempObject(what))
			failed = true
			break
		}
		if _, taken := c.stmts[string(name)]; taken {
			out = protocol.AppendErrorResponse(out, protocol.NewError("42P05", fmt.Sprintf("prepared statement %q already exists", name)))
			failed = true
			break
		}
		c.stmts[string(name)] = c.srv.stmts.get(string(query), types)
		c.pool.counters.clientParses.Add(1)
		out = append(out, parseCompleteMsg...)
	}
	c.mu.Unlock()
	c.deferred = c.deferred[:0]
	if failed && !sync {
		c.discarding = true
	}
	if sync {
		out = protocol.AppendReadyForQuery(out, c.localStatus())
	}
	return c.writeLocal(out)
}

// sendDeferred sends held Parses on l, ahead of the message that needed a server.
func (c *clientSession) sendDeferred(l *lease) error {
	for _, msg := range c.deferred {
		c.mu.Lock()
		l.account('P')
		c.mu.Unlock()
		l.recordForRetry('P', msg)
		if err := c.send(l, msg); err != nil {
			return err
		}
	}
	c.deferred = c.deferred[:0]
	return nil
}

// refuseParse stands in for a client's Parse that creates a temporary object, on a server
// the client holds: earlier messages of the batch may still be unanswered there, so the
// refusal must come in the Parse's place. cmpool sends a Parse the server fails at once
// (a syntax error; nothing of the client's statement reaches the server), and the server
// skips the rest of the batch to Sync, as the client expects after an error; the relay
// replaces the server's error with cmpool's (replyError). A refused unnamed Parse replaces
// the unnamed statement, as on a server.
func (c *clientSession) refuseParse(l *lease, name []byte, what string, out []byte) []byte {
	stand := refusedStmtName
	if len(name) == 0 {
		stand = ""
		c.unnamed = c.unnamed[:0]
		l.sc.UnnamedOwner = 0
	}
	l.parses.push(inflight{action: replyRefused, segment: l.sentSeq, client: what})
	return protocol.AppendParse(out, stand, refusedQuery, []byte{0, 0})
}

// What refuseParse sends: a statement name in cmpool's namespace that is never prepared,
// and a text that fails to parse with 42601 at "cmpool_refused".
const (
	refusedStmtName = stmtPrefix + "refused"
	refusedQuery    = "cmpool_refused"
)

// replyRefused is the inflight action of refuseParse's Parse; its client field holds
// what the refused statement creates.
const replyRefused = replyDupStatement + 1

// syntaxErrorCode is the SQLSTATE field of syntax_error, which refuseParse's Parse gets.
var syntaxErrorCode = []byte("C42601\x00")

// lookupForUse maps a client's statement name for Bind or Describe. It returns nil when
// the message should go unchanged: the unnamed statement, or a name the client never
// prepared, which the server then reports as 26000 in the right place. A name in cmpool's
// own namespace is never passed through, so it cannot reach another client's statement.
func (c *clientSession) lookupForUse(name []byte) *preparedStmt {
	if len(name) == 0 {
		return nil
	}
	if stmt := c.stmts[string(name)]; stmt != nil {
		return stmt
	}
	if bytes.HasPrefix(name, []byte(stmtPrefix)) {
		return noopStmt
	}
	return nil
}

// ensureUnnamed appends a hidden replay of the client's unnamed Parse when the server's
// unnamed statement is not that one (another client's, or none).
func (c *clientSession) ensureUnnamed(l *lease, out []byte) []byte {
	sc := l.sc
	if len(c.unnamed) == 0 || sc.UnnamedOwner == c.id && sc.UnnamedGen == c.unnamedGen {
		return out
	}
	sc.UnnamedOwner, sc.UnnamedGen = c.id, c.unnamedGen
	l.parses.push(inflight{action: replyHide, segment: l.sentSeq})
	l.pool.counters.serverParses.Add(1)
	return append(out, c.unnamed...)
}

// ensurePrepared appends a hidden Parse of stmt when the server lacks it.
func (c *clientSession) ensurePrepared(l *lease, stmt *preparedStmt, out []byte) []byte {
	if stmt == noopStmt || preparedOf(l.sc).has(stmt) {
		return out
	}
	out = c.evictFor(l, stmt, out)
	l.parses.push(inflight{action: replyHide, segment: l.sentSeq, stmt: stmt})
	l.pool.counters.serverParses.Add(1)
	return append(out, stmt.parse...)
}

// evictFor records stmt as prepared on the lease's server and appends hidden Closes of
// the statements evicted to make room.
func (c *clientSession) evictFor(l *lease, stmt *preparedStmt, out []byte) []byte {
	c.evicted = preparedOf(l.sc).add(stmt, c.evicted[:0])
	for _, old := range c.evicted {
		l.closes.push(inflight{action: replyHide, segment: l.sentSeq, stmt: old})
		out = protocol.AppendClose(out, 'S', old.name)
	}
	clear(c.evicted)
	return out
}

// replyParseComplete decides what the client sees for a ParseComplete; nil hides it.
func (c *clientSession) replyParseComplete(l *lease, msg []byte) []byte {
	c.mu.Lock()
	it, _ := l.parses.pop()
	c.mu.Unlock()
	if it.action == replyHide {
		return nil
	}
	return msg
}

// replyCloseComplete decides what the client sees for a CloseComplete; nil hides it.
func (c *clientSession) replyCloseComplete(l *lease, msg []byte) []byte {
	c.mu.Lock()
	it, _ := l.closes.pop()
	c.mu.Unlock()
	switch it.action {
	case replyHide:
		return nil
	case replyAsParse:
		return parseCompleteMsg
	}
	return msg
}

// boundStmt is a named statement bound in Sync segment segment.
type boundStmt struct {
	stmt    *preparedStmt
	client  string
	segment uint64
}

// trimBound drops the entries of segments already answered.
func trimBound(b []boundStmt, answered uint64) []boundStmt {
	i := 0
	for i < len(b) && b[i].segment < answered {
		i++
	}
	if i == len(b) {
		return b[:0]
	}
	return b[i:]
}

var cachedPlanChanged = []byte("cached plan must not change result type")

// replyError runs at an ErrorResponse: the server skips the rest of this Sync segment, so
// what its Parses and Closes would have done did not happen. It returns the message to
// send, rewritten when it is the duplicate-statement error cmpool provoked.
func (c *clientSession) replyError(l *lease, msg []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(l.bound) > 0 && bytes.Contains(msg, cachedPlanChanged) {
		// The statement's result type changed (DDL): a fresh server-side name makes its
		// next use prepare it again, on every server.
		for _, b := range l.bound {
			if b.segment == l.recvSeq {
				fresh := c.srv.stmts.renew(b.stmt)
				if c.stmts[b.client] == b.stmt {
					c.stmts[b.client] = fresh
				}
			}
		}
	}
	if l.parses.empty() && l.closes.empty() {
		return msg
	}
	if head, ok := l.parses.peek(); ok && head.action == replyRefused &&
		bytes.Contains(msg, syntaxErrorCode) && bytes.Contains(msg, []byte(refusedQuery)) {
		l.parses.pop()
		msg = protocol.AppendErrorResponse(nil, c.refuseTempObject(head.client))
	}
	if head, ok := l.parses.peek(); ok && head.action == replyDupStatement &&
		bytes.Contains(msg, []byte("42P05")) && bytes.Contains(msg, []byte(head.stmt.name)) {
		l.parses.pop()
		if rewritten := protocol.ReplaceErrorMessage(msg[protocol.HeaderLen:], `prepared statement "`+head.client+`" already exists`); rewritten != nil {
			msg = rewritten
		}
	}
	seg := l.recvSeq
	l.parses.dropSegment(seg, func(it inflight) {
		if it.stmt == nil || it.action == replyDupStatement {
			return
		}
		preparedOf(l.sc).remove(it.stmt.name)
		if it.client != "" && c.stmts[it.client] == it.stmt {
			delete(c.stmts, it.client)
		}
	})
	l.closes.dropSegment(seg, func(it inflight) {
		switch it.action {
		case replyHide:
			// The eviction did not happen: the server still has the statement.
			if it.stmt != nil {
				preparedOf(l.sc).restore(it.stmt)
			}
		case replyAsParse:
			if c.stmts[it.client] == it.stmt {
				delete(c.stmts, it.client)
			}
		}
	})
	return msg
}

// simpleCommand answers DEALLOCATE, DISCARD ALL and SQL PREPARE/EXECUTE where pooling
// changes their meaning, and refuses LISTEN and temporary objects outside session mode. It
// reports whether the query was handled here.
func (c *clientSession) simpleCommand(q string) (bool, error) {
	kind, name := router.CommandOf(q)
	session := c.mode == ModeSession
	var reply []byte
	if !session {
		if what := tempObjectOf(q); what != "" {
			return true, c.replyLocally(protocol.AppendErrorResponse(nil, c.refuseTempObject(what)))
		}
	}
	switch kind {
	default:
		return false, nil
	case router.CommandListen:
		if session {
			return false, nil
		}
		reply = protocol.AppendErrorResponse(nil, c.refuseListen())
	case router.CommandPrepare, router.CommandExecute:
		if session {
			return false, nil
		}
		pe := protocol.NewError(protocol.CodeFeatureNotSupported,
			fmt.Sprintf("SQL-level %s is not supported in %s pooling mode", strings.ToUpper(q[:strings.IndexAny(q+" ", " \t\n(")]), c.mode))
		pe.Hint = "use protocol-level prepared statements (Parse/Bind, as drivers do), which cmpool maps across server connections, or pool_mode = session"
		reply = protocol.AppendErrorResponse(nil, pe)
	case router.CommandDeallocate:
		c.mu.Lock()
		_, known := c.stmts[name]
		delete(c.stmts, name)
		c.mu.Unlock()
		if !known {
			if session {
				return false, nil // an SQL-level statement of the session's own
			}
			reply = protocol.AppendErrorResponse(nil, protocol.NewError("26000", fmt.Sprintf("prepared statement %q does not exist", name)))
		} else {
			reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE")}).Encode(nil)
		}
	case router.CommandDeallocateAll, router.CommandDiscardAll:
		var statuses []byte
		c.mu.Lock()
		clear(c.stmts)
		if kind == router.CommandDiscardAll && !session {
			// DISCARD ALL resets the session's settings to what it started with, and the
			// client is told of the reported ones that change, as a server would.
			statuses = c.discardStatuses(c.params)
			c.params = maps.Clone(c.initialParams)
			c.paramsVersion++
		}
		if session && c.lease != nil {
			// The server runs it: its statements, cmpool's included, are gone.
			preparedOf(c.lease.sc).clear()
			c.mu.Unlock()
			return false, nil
		}
		c.mu.Unlock()
		tag := "DEALLOCATE ALL"
		if kind == router.CommandDiscardAll {
			tag = "DISCARD ALL"
		}
		reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(nil)
		reply = append(reply, statuses...)
	}
	return true, c.replyLocally(reply)
}

// discardStatuses returns the ParameterStatus messages a server sends for DISCARD ALL in a
// session whose parameters were params: each reported parameter whose value changes, to
// its startup value or else to the server's default. The caller holds c.mu.
func (c *clientSession) discardStatuses(params map[string]string) []byte {
	var defaults map[string]string
	if w, ok := c.srv.welcomes.Load(welcomeKey{c.database, c.user}); ok {
		defaults = w.(map[string]string)
	}
	var out []byte
	for _, name := range slices.Sorted(maps.Keys(reportedParams)) {
		name = reportedParams[name]
		if serverOnlyParams[name] {
			continue
		}
		now, set := params[name]
		v, ok := c.initialParams[name]
		if !ok {
			v, ok = defaults[name]
		}
		if !set || !ok || now == v {
			continue
		}
		out, _ = (&pgproto3.ParameterStatus{Name: name, Value: v}).Encode(out)
	}
	return out
}

// waitIdle waits until every request sent on the current lease has been answered and
// the lease is not being synced. The caller holds c.mu.
func (c *clientSession) waitIdle() {
	c.ensureRelayLocked() // the replies waited for must be read
	for c.lease != nil && (c.lease.pending > 0 || c.lease.unsynced || !c.lease.open()) {
		c.idle.Wait()
	}
}

// replyLocally answers a simple query without a server: the reply, then ReadyForQuery
// with the session's transaction status. With a lease it first waits until every earlier
// request has been answered, so replies stay in order.
func (c *clientSession) replyLocally(reply []byte) error {
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
	return c.writeLocal(protocol.AppendReadyForQuery(reply, status))
}
