package stmt

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
)

// Names are one client's prepared statements: its names for shared statements, its
// unnamed statement, and the named Parses held back while it has no server. The zero
// value is ready to use.
//
// The caller holds the client's session lock for every method, except those that only
// touch the held Parses (Defer, Deferred, HasDeferred, DropDeferred), which belong to
// the client's own goroutine.
type Names struct {
	// id tells this client's unnamed statement apart on a server (Prepared.unnamedOwner);
	// 0 until first needed.
	id     uint64
	byName map[string]*Stmt
	// sql are the statements the client prepared with SQL PREPARE (sqlprepare.go); their
	// names share the namespace of byName's, as on a server.
	sql map[string]*SQLStmt
	// x is what only a client of the extended protocol needs; nil until it is first
	// needed, so that the others (most idle clients) do not carry it.
	x *extended
}

// extended is the part of Names a client of the extended protocol uses.
type extended struct {
	// unnamed is the client's last Parse of the unnamed statement (the whole message),
	// and unnamedGen counts those Parses. unnamedTraits are what the registry's judge
	// said of unnamedText, the text of the unnamed statement.
	unnamed       []byte
	unnamedGen    uint64
	unnamedTraits *session.Traits
	unnamedText   string
	// boundName is the statement name last bound, kept to be reused as long as it is
	// the same.
	boundName string
	// deferred holds named Parse messages received outside a transaction, not yet sent
	// anywhere (see Defer).
	deferred [][]byte
	evicted  []*Stmt // scratch for evictFor
}

// ext returns n.x, making it first if needed.
func (n *Names) ext() *extended {
	if n.x == nil {
		n.x = &extended{}
	}
	return n.x
}

// unnamedTraits are the traits of the client's unnamed statement, if it has one.
func (n *Names) unnamedTraits() *session.Traits {
	if n.x == nil {
		return nil
	}
	return n.x.unnamedTraits
}

// lastNamesID numbers the Names whose unnamed statement a server has held.
var lastNamesID atomic.Uint64

// ownerID returns n's id, giving it one first if needed.
func (n *Names) ownerID() uint64 {
	if n.id == 0 {
		n.id = lastNamesID.Add(1)
	}
	return n.id
}

// Len is the number of named statements the client has prepared.
func (n *Names) Len() int { return len(n.byName) }

// set maps the client's name to s.
func (n *Names) set(name string, s *Stmt) {
	if n.byName == nil {
		n.byName = make(map[string]*Stmt)
	}
	n.byName[name] = s
}

// Forget drops the client's statement name (DEALLOCATE) and reports whether it was
// prepared.
func (n *Names) Forget(name string) bool {
	_, known := n.byName[name]
	_, knownSQL := n.sql[name]
	delete(n.byName, name)
	delete(n.sql, name)
	return known || knownSQL
}

// ForgetAll drops every named statement of the client (DEALLOCATE ALL, DISCARD ALL).
func (n *Names) ForgetAll() {
	clear(n.byName)
	clear(n.sql)
}

// ForgetReplayed drops the name a named Parse, msg, mapped when it was planned for a
// server that did not answer it (a read whose replica failed, or that a replica refused
// with 25006), so that the Parse can be planned again for another server as the new
// Parse it is to the client. A mapping of the name to another text is kept: the Parse
// then fails with 42P05, as it did the first time. The caller holds the client's session
// lock.
func (n *Names) ForgetReplayed(msg []byte) {
	name, query, _, ok := protocol.ParseParse(msg[protocol.HeaderLen:])
	if !ok || len(name) == 0 {
		return
	}
	if st := n.byName[string(name)]; st != nil && st.Query == string(query) {
		delete(n.byName, string(name))
	}
}

// Query returns the text a Bind or Describe of the client's statement name runs: that
// of the unnamed statement, of a named one, or of a named Parse held back. A named
// statement's text comes as shared, the others as raw, the bytes of the client's Parse.
func (n *Names) Query(name []byte) (shared string, raw []byte, ok bool) {
	if len(name) == 0 {
		if n.x == nil || len(n.x.unnamed) == 0 {
			return "", nil, false
		}
		_, query, _, _ := protocol.ParseParse(n.x.unnamed[protocol.HeaderLen:])
		return "", query, true
	}
	if s := n.byName[string(name)]; s != nil {
		return s.Query, nil, true
	}
	for _, d := range n.Deferred() { // prepared in this batch, not sent yet
		if pname, query, _, ok := protocol.ParseParse(d[protocol.HeaderLen:]); ok && string(pname) == string(name) {
			return "", query, true
		}
	}
	return "", nil, false
}

// lookupForUse maps a client's statement name for Bind or Describe. It returns nil when
// the message should go unchanged: the unnamed statement, or a name the client never
// prepared, which the server then reports as 26000 in the right place. A name in cmpool's
// own namespace is never passed through, so it cannot reach another client's statement.
func (n *Names) lookupForUse(name []byte) *Stmt {
	if len(name) == 0 {
		return nil
	}
	if s := n.byName[string(name)]; s != nil {
		return s
	}
	if bytes.HasPrefix(name, []byte(prefix)) {
		return noopStmt
	}
	return nil
}

// Deferrable reports whether msg, a Parse, may be held back: it names its statement.
func Deferrable(msg []byte) bool {
	name, _, _, ok := protocol.ParseParse(msg[protocol.HeaderLen:])
	return ok && len(name) > 0
}

// Defer holds a named Parse that arrives while the client has no server. A Parse+Sync
// (libpq's PQprepare, pgbench -M prepared) is then answered without taking a server from
// the pool (AnswerDeferred), so a client preparing statements never waits behind, or
// blocks, clients in transactions. Anything else sends the held Parses first, in order.
// The cost: a statement that does not parse fails at its first Bind rather than at
// Parse. The caller checks Deferrable first.
func (n *Names) Defer(msg []byte) {
	x := n.ext()
	x.deferred = append(x.deferred, bytes.Clone(msg))
}

// HasDeferred reports whether Parses are held back.
func (n *Names) HasDeferred() bool { return n.x != nil && len(n.x.deferred) > 0 }

// Deferred returns the Parses held back, in order.
func (n *Names) Deferred() [][]byte {
	if n.x == nil {
		return nil
	}
	return n.x.deferred
}

// DropDeferred forgets the Parses held back: they were sent, or a server would have
// skipped them.
func (n *Names) DropDeferred() {
	if n.x != nil {
		n.x.deferred = n.x.deferred[:0]
	}
}

// AnswerDeferred answers the held Parses without a server, as a server would, and drops
// them: each maps the name, or fails if refuse refuses its name or text, or with 42P05 if
// the name is taken, which skips the rest. It returns the replies appended to out, and
// whether one failed. The caller holds the client's session lock.
func (n *Names) AnswerDeferred(out []byte, reg *Registry, counters *Counters, refuse func(name, query []byte) *protocol.Error) ([]byte, bool) {
	failed := false
	for _, msg := range n.Deferred() {
		name, query, types, _ := protocol.ParseParse(msg[protocol.HeaderLen:])
		if pe := refuse(name, query); pe != nil {
			out = protocol.AppendErrorResponse(out, pe)
			failed = true
			break
		}
		if n.Has(string(name)) {
			out = protocol.AppendErrorResponse(out, protocol.NewError("42P05", fmt.Sprintf("prepared statement %q already exists", name)))
			failed = true
			break
		}
		n.set(string(name), reg.Get(string(query), types))
		counters.ClientParses.Add(1)
		out = append(out, parseCompleteMsg...)
	}
	n.DropDeferred()
	return out, failed
}
