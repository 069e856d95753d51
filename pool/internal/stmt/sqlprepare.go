package stmt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/cmlite/cmpool/protocol"
)

// SQL-level prepared statements (PREPARE name AS …, EXECUTE name).
//
// A client's PREPARE foo (types) AS body is sent as PREPARE of cmpool's name for that text,
// which is derived from a hash of types and body: clients preparing the same text share
// one server-side statement, as with the protocol-level registry. Once the server's
// CommandComplete arrives, foo maps to it in the client's Names; a PREPARE that fails maps
// nothing. EXECUTE foo (also under EXPLAIN or CREATE TABLE AS) is sent with cmpool's name
// in place of foo; on a server that lacks the statement the same Query first prepares it,
// and that PREPARE's CommandComplete is hidden. A PREPARE of a statement the server
// already has deallocates it first (hidden), so that the server checks the text again
// and answers the PREPARE itself.
//
// What each server has of these is kept in its Prepared (the sql set), cleared with the
// rest when the server's statements go (DISCARD ALL). Each step is recorded only when the
// server's CommandComplete for it arrives; an ErrorResponse skips the rest of the Query,
// and what those statements would have done is dropped.

// sqlPrefix starts the server-side names of SQL-level statements.
const sqlPrefix = prefix + "sql_"

// SQLStmt is a statement text prepared with SQL PREPARE, under cmpool's server-side name.
type SQLStmt struct {
	Name    string // server-side name
	Body    string // the statement prepared, as the client wrote it
	Prepare string // the PREPARE a server gets for it
}

// NewSQLStmt returns the statement for PREPARE … types AS body (types as written, with
// parentheses, or ""), prepared in schema generation gen (Registry.SchemaGen): after DDL
// through cmpool the same text gets a new name, so that a client's new PREPARE is
// analysed against the new schema on every server, not served by a copy analysed before.
func NewSQLStmt(types, body string, gen uint64) *SQLStmt {
	sum := sha256.Sum256([]byte(strconv.FormatUint(gen, 10) + "\x00" + types + "\x00" + body))
	name := sqlPrefix + hex.EncodeToString(sum[:12])
	prep := "PREPARE " + name
	if types != "" {
		prep += " " + types
	}
	// The newline ends any comment the body may end with before more is appended.
	return &SQLStmt{Name: name, Body: body, Prepare: prep + " AS " + body + "\n"}
}

// SQL returns the client's SQL-level statement name, or nil.
func (n *Names) SQL(name string) *SQLStmt { return n.sql[name] }

// Has reports whether the client has a statement called name, prepared with SQL or with
// the protocol: they share one namespace, as on a server.
func (n *Names) Has(name string) bool {
	_, p := n.byName[name]
	_, s := n.sql[name]
	return p || s
}

// setSQL maps the client's name to s.
func (n *Names) setSQL(name string, s *SQLStmt) {
	if n.sql == nil {
		n.sql = make(map[string]*SQLStmt)
	}
	n.sql[name] = s
}

// HasSQL reports whether the server has s.
func (l *Prepared) HasSQL(s *SQLStmt) bool {
	_, ok := l.sql[s.Name]
	return ok
}

// SQLLen is the number of SQL-level statements the server has.
func (l *Prepared) SQLLen() int { return len(l.sql) }

// addSQL records that the server has s.
func (l *Prepared) addSQL(s *SQLStmt) {
	if l.sql == nil {
		l.sql = make(map[string]struct{})
	}
	l.sql[s.Name] = struct{}{}
}

// SQLCommand is a client's PREPARE or EXECUTE, judged on the client goroutine and planned
// when it is sent (SQLPlan.Command), on whatever server the client then holds.
type SQLCommand struct {
	// Query is the client's query text.
	Query string
	// Prepare: a PREPARE of Stmt as Client; else a statement that runs Client's Stmt,
	// naming it in Query[NameStart:NameEnd].
	Prepare            bool
	Client             string
	Stmt               *SQLStmt
	NameStart, NameEnd int
	// Plain: Query is EXECUTE alone, which does what Stmt does (not EXPLAIN or CREATE
	// TABLE AS).
	Plain bool
}

// sqlAction is what a CommandComplete of a statement cmpool sent does.
type sqlAction int

const (
	sqlDeallocated    sqlAction = iota // hidden DEALLOCATE: the server no longer has stmt
	sqlPrepared                        // hidden PREPARE: the server has stmt
	sqlClientPrepared                  // the client's PREPARE, shown: the server has stmt, and client maps to it
	sqlExecuted                        // the client's EXECUTE of stmt, shown (see Error)
)

// sqlDue is a CommandComplete due for a statement cmpool rewrote, in Query segment.
type sqlDue struct {
	action  sqlAction
	segment uint64
	stmt    *SQLStmt
	name    string // sqlDeallocated: the server-side name
	client  string
}

// SQLPlan is one lease's bookkeeping of SQL-level prepared statements: the
// CommandCompletes due for the statements it rewrote. Like Plan, it does no I/O; the
// caller holds the client's session lock for every method.
type SQLPlan struct {
	due []sqlDue
}

// Pending reports whether replies are due.
func (p *SQLPlan) Pending() bool { return len(p.due) > 0 }

// Command returns the Query message to send for cmd on the server of s, in segment
// s.Segment, and records the replies due.
func (p *SQLPlan) Command(out []byte, cmd *SQLCommand, s Scope) []byte {
	st := cmd.Stmt
	q := p.evictSQLFor(st, s)
	switch {
	case cmd.Prepare && p.has(st, s):
		p.due = append(p.due,
			sqlDue{action: sqlDeallocated, segment: s.Segment, name: st.Name},
			sqlDue{action: sqlClientPrepared, segment: s.Segment, stmt: st, client: cmd.Client})
		q += "DEALLOCATE " + st.Name + ";\n" + st.Prepare
	case cmd.Prepare:
		p.due = append(p.due, sqlDue{action: sqlClientPrepared, segment: s.Segment, stmt: st, client: cmd.Client})
		q += st.Prepare
	default:
		// Spaced: a quoted name may touch the words around it (EXECUTE"s"(1)).
		rewritten := cmd.Query[:cmd.NameStart] + " " + st.Name + " " + cmd.Query[cmd.NameEnd:]
		if p.has(st, s) {
			p.due = append(p.due, sqlDue{action: sqlExecuted, segment: s.Segment, stmt: st})
			q += rewritten
		} else {
			p.due = append(p.due, sqlDue{action: sqlPrepared, segment: s.Segment, stmt: st})
			q += st.Prepare + ";\n" + rewritten
		}
	}
	return appendQuery(out, q)
}

// evictSQLFor returns the hidden DEALLOCATE that makes room on the server of s for st,
// which is to be prepared there, or "": the server keeps at most as many SQL-level
// statements as protocol-level ones (max_prepared_statements, 0: no limit). The one to
// go is any other; a client that uses it again prepares it again.
func (p *SQLPlan) evictSQLFor(st *SQLStmt, s Scope) string {
	l := s.Server
	if l.cap <= 0 || len(l.sql) < l.cap || p.has(st, s) {
		return ""
	}
	for name := range l.sql {
		if name == st.Name || p.deallocating(name) {
			continue
		}
		p.due = append(p.due, sqlDue{action: sqlDeallocated, segment: s.Segment, name: name})
		return "DEALLOCATE " + name + ";\n"
	}
	return ""
}

// deallocating reports whether a DEALLOCATE of server-side name is due.
func (p *SQLPlan) deallocating(name string) bool {
	for _, d := range p.due {
		if d.action == sqlDeallocated && d.name == name {
			return true
		}
	}
	return false
}

// has reports whether the server of s has st, or will once the replies due come.
func (p *SQLPlan) has(st *SQLStmt, s Scope) bool {
	if s.Server.HasSQL(st) {
		return !p.deallocating(st.Name)
	}
	for _, d := range p.due {
		if d.stmt == st && d.action != sqlDeallocated {
			return true
		}
	}
	return false
}

// appendQuery appends a Query message for q.
func appendQuery(out []byte, q string) []byte {
	out = append(out, 'Q', 0, 0, 0, 0)
	start := len(out) - 4
	out = append(out, q...)
	out = append(out, 0)
	n := len(out) - start
	out[start], out[start+1], out[start+2], out[start+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return out
}

// CommandComplete runs at a CommandComplete of segment s.Segment and reports whether it
// answers a statement of cmpool's own, to be hidden from the client.
func (p *SQLPlan) CommandComplete(s Scope) (hide bool) {
	if len(p.due) == 0 || p.due[0].segment != s.Segment {
		return false
	}
	d := p.due[0]
	p.due[0] = sqlDue{}
	p.due = p.due[1:]
	switch d.action {
	case sqlExecuted:
		return false
	case sqlDeallocated:
		delete(s.Server.sql, d.name)
		return true
	case sqlPrepared:
		s.Server.addSQL(d.stmt)
		return true
	}
	s.Server.addSQL(d.stmt)
	s.Names.setSQL(d.client, d.stmt)
	return false
}

// Error runs at an ErrorResponse msg of segment s.Segment, before Answered. An EXECUTE
// of a statement the server was thought to have that fails with 26000 naming it means the
// server lost it (a DEALLOCATE ALL run where cmpool could not see it, as in a function):
// the record goes, so that the next EXECUTE prepares it again. The client gets the error.
func (p *SQLPlan) Error(msg []byte, s Scope) {
	if len(p.due) == 0 || p.due[0].segment != s.Segment || p.due[0].action != sqlExecuted ||
		!bytes.Contains(msg, undefinedStatementCode) || !bytes.Contains(msg, []byte(p.due[0].stmt.Name)) {
		return
	}
	delete(s.Server.sql, p.due[0].stmt.Name)
}

// undefinedStatementCode is the SQLSTATE field of invalid_sql_statement_name (26000).
var undefinedStatementCode = []byte("C26000\x00")

// Answered drops what is still due in segments up to seg: an ErrorResponse or the
// ReadyForQuery of seg came, so those statements did not run.
func (p *SQLPlan) Answered(seg uint64) {
	i := 0
	for i < len(p.due) && p.due[i].segment <= seg {
		p.due[i] = sqlDue{}
		i++
	}
	p.due = p.due[i:]
	if len(p.due) == 0 {
		p.due = nil
	}
}

// NotFound is the error for an EXECUTE or DEALLOCATE of a name the client never prepared.
func NotFound(name string) *protocol.Error {
	return protocol.NewError("26000", fmt.Sprintf("prepared statement %q does not exist", name))
}

// Duplicate is the error for a PREPARE of a name the client has.
func Duplicate(name string) *protocol.Error {
	return protocol.NewError("42P05", fmt.Sprintf("prepared statement %q already exists", name))
}
