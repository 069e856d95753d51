package stmt

import (
	"bytes"
	"sync/atomic"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
)

// ErrMalformed is the error for a Parse, Bind, Describe or Close cmpool cannot read.
var ErrMalformed = protocol.NewFatal(protocol.CodeProtocolViolation, "malformed extended-protocol message")

// Counters are one pool's statement counts, added to as messages are planned.
type Counters struct {
	ClientParses atomic.Int64 // Parses from clients
	ServerParses atomic.Int64 // Parses sent to servers
	Binds        atomic.Int64 // Binds from clients
}

// Scope is what a message is planned in: the client's names, what the lease's server has
// prepared, the shared registry, the pool's counters, and the Sync segment.
type Scope struct {
	Names    *Names
	Server   *Prepared
	Registry *Registry
	Counters *Counters
	// Segment is the number of Syncs and Queries sent on the lease before the message
	// (for a reply: received before it, that is the segment being answered).
	Segment uint64
}

// Plan is one lease's bookkeeping of prepared statements: the Parses and Closes it sent
// whose replies are due, and the named statements bound in segments not yet answered.
// Message turns a client's message into what the server gets; ParseComplete,
// CloseComplete and Error decide what the client sees of the server's replies.
//
// A Plan is pure bookkeeping: it does no I/O. The caller holds the client's session lock
// for every method (the client goroutine plans, the relay reads replies).
type Plan struct {
	parses, closes inflightQueue
	bound          []boundStmt // named statements bound in Sync segments not yet answered
}

// The fixed names and texts cmpool sends in place of a client's.
const (
	// noopStmtName is never prepared: closing it is a no-op that yields CloseComplete.
	noopStmtName = prefix + "noop"
	// refusedStmtName and refusedQuery are what Refuse sends: a statement name in
	// cmpool's namespace that is never prepared, and a text that fails to parse with
	// 42601 at "cmpool_refused".
	refusedStmtName = prefix + "refused"
	refusedQuery    = "cmpool_refused"
)

// noopStmt stands for a name in cmpool's namespace that the client never prepared: it is
// sent as noopStmtName, which no server has, so the server reports 26000.
var noopStmt = &Stmt{Name: noopStmtName}

var (
	parseCompleteMsg  = []byte{'1', 0, 0, 0, 4}
	cachedPlanChanged = []byte("cached plan must not change result type")
	// syntaxErrorCode is the SQLSTATE field of syntax_error, which Refuse's Parse gets.
	syntaxErrorCode = []byte("C42601\x00")
)

// CachedPlanChanged reports whether an ErrorResponse says a prepared statement's result
// type changed under it (after DDL).
func CachedPlanChanged(msg []byte) bool { return bytes.Contains(msg, cachedPlanChanged) }

// Message appends to out what to send the server for the client's Parse, Bind, Describe
// or Close msg, and records the replies to expect. traits are the Traits of the statement
// a Bind binds, if any.
func (p *Plan) Message(out, msg []byte, s Scope) (_ []byte, traits *session.Traits, err error) {
	typ, body := msg[0], msg[protocol.HeaderLen:]
	n := s.Names
	seg := s.Segment
	switch typ {
	case 'P':
		s.Counters.ClientParses.Add(1)
		name, query, types, ok := protocol.ParseParse(body)
		if !ok {
			return out, nil, ErrMalformed
		}
		if len(name) == 0 {
			// The unnamed statement is the client's too: keep it, so that a Bind in a
			// later transaction (on whatever server) binds this client's statement.
			x := n.ext()
			x.unnamed = append(x.unnamed[:0], msg...)
			x.unnamedGen++
			if string(query) != x.unnamedText {
				x.unnamedText = string(query)
				x.unnamedTraits = nil
				if s.Registry.Judge != nil {
					x.unnamedTraits = s.Registry.Judge(x.unnamedText)
				}
			}
			s.Server.unnamedOwner, s.Server.unnamedGen = n.ownerID(), x.unnamedGen
			p.parses.push(inflight{action: replyForward, segment: seg})
			s.Counters.ServerParses.Add(1)
			return append(out, msg...), nil, nil
		}
		if existing := n.byName[string(name)]; existing != nil {
			// Make the server raise 42P05 in the right place: prepare the existing
			// statement there if needed, then Parse its name again.
			out = p.ensurePrepared(out, existing, s)
			p.parses.push(inflight{action: replyDupStatement, segment: seg, stmt: existing, client: string(name)})
			return protocol.AppendParse(out, existing.Name, "SELECT 1", []byte{0, 0}), nil, nil
		}
		st := s.Registry.Get(string(query), types)
		cname := string(name)
		n.set(cname, st)
		if s.Server.has(st) {
			p.closes.push(inflight{action: replyAsParse, segment: seg, stmt: st, client: cname})
			return protocol.AppendClose(out, 'S', noopStmtName), nil, nil
		}
		out = p.evictFor(out, st, s)
		p.parses.push(inflight{action: replyForward, segment: seg, stmt: st, client: cname})
		s.Counters.ServerParses.Add(1)
		return append(out, st.parse...), nil, nil

	case 'B':
		s.Counters.Binds.Add(1)
		portal, rest, ok := protocol.CString(body)
		if !ok {
			return out, nil, ErrMalformed
		}
		name, rest, ok := protocol.CString(rest)
		if !ok {
			return out, nil, ErrMalformed
		}
		if len(name) == 0 {
			out = p.ensureUnnamed(out, s)
			return append(out, msg...), n.unnamedTraits(), nil
		}
		st := n.lookupForUse(name)
		if st == nil {
			return append(out, msg...), nil, nil
		}
		out = p.ensurePrepared(out, st, s)
		x := n.ext()
		if string(name) != x.boundName {
			x.boundName = string(name)
		}
		p.bound = append(p.bound, boundStmt{stmt: st, client: x.boundName, segment: seg})
		out = protocol.AppendBind(out, portal, st.Name, rest)
		return out, st.Traits, nil

	case 'D':
		if len(body) < 2 {
			return out, nil, ErrMalformed
		}
		name, _, ok := protocol.CString(body[1:])
		if !ok {
			return out, nil, ErrMalformed
		}
		if body[0] != 'S' {
			return append(out, msg...), nil, nil
		}
		if len(name) == 0 {
			out = p.ensureUnnamed(out, s)
			return append(out, msg...), nil, nil
		}
		st := n.lookupForUse(name)
		if st == nil {
			return append(out, msg...), nil, nil
		}
		out = p.ensurePrepared(out, st, s)
		return protocol.AppendDescribe(out, 'S', st.Name), nil, nil

	case 'C':
		if len(body) < 2 {
			return out, nil, ErrMalformed
		}
		name, _, ok := protocol.CString(body[1:])
		if !ok {
			return out, nil, ErrMalformed
		}
		p.closes.push(inflight{action: replyForward, segment: seg})
		if body[0] == 'S' && len(name) == 0 && n.x != nil {
			n.x.unnamed = n.x.unnamed[:0]
			s.Server.unnamedOwner = 0
		}
		if body[0] == 'S' && len(name) > 0 {
			// The server's copy may serve other clients: only the mapping goes (an SQL-level
			// statement's too, as a server's Close drops either).
			delete(n.byName, string(name))
			delete(n.sql, string(name))
			return protocol.AppendClose(out, 'S', noopStmtName), nil, nil
		}
		return append(out, msg...), nil, nil
	}
	return append(out, msg...), nil, nil
}

// Refuse appends what stands in for a client's Parse (named name) that cmpool refuses
// with refusal, on a server the client holds: earlier messages of the batch may still be
// unanswered there, so the refusal must come in the Parse's place. cmpool sends a Parse
// the server fails at once (a syntax error; nothing of the client's statement reaches
// the server), and the server skips the rest of the batch to Sync, as the client expects
// after an error; Error replaces the server's error with refusal. A refused unnamed
// Parse replaces the unnamed statement, as on a server.
func (p *Plan) Refuse(out, name []byte, refusal *protocol.Error, s Scope) []byte {
	s.Counters.ClientParses.Add(1)
	stand := refusedStmtName
	if len(name) == 0 {
		stand = ""
		if x := s.Names.x; x != nil {
			x.unnamed = x.unnamed[:0]
		}
		s.Server.unnamedOwner = 0
	}
	p.parses.push(inflight{action: replyRefused, segment: s.Segment, refusal: refusal})
	return protocol.AppendParse(out, stand, refusedQuery, []byte{0, 0})
}

// ensureUnnamed appends a hidden replay of the client's unnamed Parse when the server's
// unnamed statement is not that one (another client's, or none).
func (p *Plan) ensureUnnamed(out []byte, s Scope) []byte {
	n := s.Names
	x := n.x
	if x == nil || len(x.unnamed) == 0 || s.Server.unnamedOwner == n.id && s.Server.unnamedGen == x.unnamedGen {
		return out
	}
	s.Server.unnamedOwner, s.Server.unnamedGen = n.ownerID(), x.unnamedGen
	p.parses.push(inflight{action: replyHide, segment: s.Segment})
	s.Counters.ServerParses.Add(1)
	return append(out, x.unnamed...)
}

// ensurePrepared appends a hidden Parse of st when the server lacks it.
func (p *Plan) ensurePrepared(out []byte, st *Stmt, s Scope) []byte {
	if st == noopStmt || s.Server.has(st) {
		return out
	}
	out = p.evictFor(out, st, s)
	p.parses.push(inflight{action: replyHide, segment: s.Segment, stmt: st})
	s.Counters.ServerParses.Add(1)
	return append(out, st.parse...)
}

// evictFor records st as prepared on the server and appends hidden Closes of the
// statements evicted to make room.
func (p *Plan) evictFor(out []byte, st *Stmt, s Scope) []byte {
	x := s.Names.ext()
	x.evicted = s.Server.add(st, x.evicted[:0])
	for _, old := range x.evicted {
		p.closes.push(inflight{action: replyHide, segment: s.Segment, stmt: old})
		out = protocol.AppendClose(out, 'S', old.Name)
	}
	clear(x.evicted)
	return out
}

// ParseComplete reports whether the client sees a ParseComplete the server sent; false
// hides it.
func (p *Plan) ParseComplete() bool {
	it, _ := p.parses.pop()
	return it.action != replyHide
}

// CloseComplete returns what the client sees for msg, a CloseComplete: msg, a
// ParseComplete in its place, or nil to hide it.
func (p *Plan) CloseComplete(msg []byte) []byte {
	it, _ := p.closes.pop()
	switch it.action {
	case replyHide:
		return nil
	case replyAsParse:
		return parseCompleteMsg
	}
	return msg
}

// Error runs at an ErrorResponse msg of segment s.Segment: the server skips the rest of
// the segment, so what its Parses and Closes would have done did not happen. It returns
// the message to send: msg, or a rewrite when it is an error cmpool provoked (a duplicate
// statement name, a refused Parse). After a "cached plan must not change result type",
// the statements bound in the segment get fresh server-side names, so that their next
// use prepares them again, on every server.
func (p *Plan) Error(msg []byte, s Scope) []byte {
	n := s.Names
	if len(p.bound) > 0 && CachedPlanChanged(msg) {
		for _, b := range p.bound {
			if b.segment == s.Segment {
				fresh := s.Registry.Renew(b.stmt)
				if n.byName[b.client] == b.stmt {
					n.byName[b.client] = fresh
				}
			}
		}
	}
	if p.parses.empty() && p.closes.empty() {
		return msg
	}
	if head, ok := p.parses.peek(); ok && head.action == replyRefused &&
		bytes.Contains(msg, syntaxErrorCode) && bytes.Contains(msg, []byte(refusedQuery)) {
		p.parses.pop()
		msg = protocol.AppendErrorResponse(nil, head.refusal)
	}
	if head, ok := p.parses.peek(); ok && head.action == replyDupStatement &&
		bytes.Contains(msg, []byte("42P05")) && bytes.Contains(msg, []byte(head.stmt.Name)) {
		p.parses.pop()
		if rewritten := protocol.ReplaceErrorMessage(msg[protocol.HeaderLen:], `prepared statement "`+head.client+`" already exists`); rewritten != nil {
			msg = rewritten
		}
	}
	p.parses.dropSegment(s.Segment, func(it inflight) {
		if it.stmt == nil || it.action == replyDupStatement {
			return
		}
		s.Server.remove(it.stmt.Name)
		if it.client != "" && n.byName[it.client] == it.stmt {
			delete(n.byName, it.client)
		}
	})
	p.closes.dropSegment(s.Segment, func(it inflight) {
		switch it.action {
		case replyHide:
			// The eviction did not happen: the server still has the statement.
			if it.stmt != nil {
				s.Server.restore(it.stmt)
			}
		case replyAsParse:
			if n.byName[it.client] == it.stmt {
				delete(n.byName, it.client)
			}
		}
	})
	return msg
}

// Answered drops what the plan kept of the statements bound in segments before seg, once
// their replies are all in.
func (p *Plan) Answered(seg uint64) {
	if len(p.bound) > 0 {
		p.bound = trimBound(p.bound, seg)
	}
}

// boundStmt is a named statement bound in Sync segment segment.
type boundStmt struct {
	stmt    *Stmt
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

// TakeBuffers gives p, empty, the buffers of from, a plan no one uses any more, which is
// left empty. Buffers grown past maxReused entries are left to the collector.
func (p *Plan) TakeBuffers(from *Plan) {
	*p = Plan{bound: reuse(from.bound)}
	p.parses.items = reuse(from.parses.items)
	p.closes.items = reuse(from.closes.items)
	*from = Plan{}
}

// maxReused bounds the entries of a buffer a plan hands on.
const maxReused = 1024

// reuse empties s for reuse, dropping the pointers it held.
func reuse[T any](s []T) []T {
	if cap(s) > maxReused {
		return nil
	}
	s = s[:cap(s)]
	clear(s)
	return s[:0]
}
