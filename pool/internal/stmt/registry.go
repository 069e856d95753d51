// Package stmt maps clients' prepared statements onto statements shared across server
// connections.
//
// A client's Parse(name, text, types) is mapped to a server-side statement whose name is
// unique per (text, types) across the proxy, so clients share preparations. Each server
// connection keeps an LRU of what it has prepared. A Bind or Describe of a statement the
// current server lacks replays the Parse first and hides its ParseComplete. A client's
// Close of a statement is answered without touching the server's copy.
//
// Every message cmpool adds or changes produces exactly one server reply of the kind the
// client expects, or one that is hidden, so replies stay in order without a full model of
// the protocol:
//   - a Parse of a statement the server already has is sent as a Close of a name that
//     never exists ("cmpool_noop"), and its CloseComplete is turned into ParseComplete;
//   - a client's Close of a statement is sent as that same no-op Close;
//   - replayed Parses and LRU evictions are hidden.
//
// Two queues of a lease's Plan (parses and closes in flight) say what to do with each
// ParseComplete and CloseComplete. After an ErrorResponse the server skips to Sync, so the
// entries of the current Sync segment are dropped, and what they would have created is
// forgotten.
//
// The types, by owner:
//   - Registry: one per proxy, the shared statements; safe for concurrent use.
//   - Prepared: one per server connection, what it has prepared; its holder's.
//   - Names: one per client, its names for statements; under the client's session lock.
//   - Plan: one per lease, the replies due; under the client's session lock.
//
// The package does no I/O and takes no lock of its callers: it turns client messages into
// what servers get and decides what clients see of the replies.
package stmt

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
)

// prefix starts every server-side statement name cmpool creates.
const prefix = "cmpool_"

// Stmt is one statement text with its parameter types, under its server-side name. Its
// fields are set when it is named and only read after.
type Stmt struct {
	Name  string
	key   string // query and parameter types
	Query string
	parse []byte // the Parse message servers get, header included
	// Traits is what the registry's Judge said of Query (nil without a Judge); this
	// package never reads it.
	Traits *session.Traits
	gen    uint64 // the registry's schema generation when it was named
}

// Registry hands out server-side names, one per distinct (text, parameter types).
//
// A server analyses a statement when it is prepared: parameter types and result columns
// are fixed then. After DDL a client's new Parse must see the new schema, as it would
// on a server of its own, not a copy analysed before the DDL. So every DDL statement
// that completes through cmpool bumps the schema generation, and a Parse of a statement
// named before it gets a fresh server-side name (prepared anew wherever it runs). Clients
// that mapped the old name keep it, like a statement they prepared before the DDL.
//
// The registry holds its statements weakly: the clients that map a statement, the
// servers that have it prepared (their LRUs) and the requests in flight keep it alive.
// Once none does, the collector frees it and its entry goes, so a stream of distinct
// texts (IN lists of every length) does not grow the registry. A later Parse of the same
// text gets a fresh name; no server has the old one any more.
//
// A Registry is safe for concurrent use.
type Registry struct {
	mu        sync.Mutex
	byKey     map[string]weak.Pointer[Stmt]
	next      uint64
	schemaGen atomic.Uint64
	// Judge, if set, gives a new statement's Traits from its text; it may be slow (it is
	// called once per text, without the registry's lock). Set it before first use.
	Judge func(query string) *session.Traits
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byKey: make(map[string]weak.Pointer[Stmt])}
}

// entry names a registry entry for its removal once its statement is freed.
type entry struct {
	key string
	ptr weak.Pointer[Stmt]
}

// forget drops e's entry, unless a newer statement for its key replaced it.
func (r *Registry) forget(e entry) {
	r.mu.Lock()
	if r.byKey[e.key] == e.ptr {
		delete(r.byKey, e.key)
	}
	r.mu.Unlock()
}

// Get returns the statement for a Parse body's query and parameter-type section.
func (r *Registry) Get(query string, types []byte) *Stmt {
	key := query + "\x00" + string(types)
	gen := r.schemaGen.Load()
	r.mu.Lock()
	if s := r.byKey[key].Value(); s != nil && s.gen >= gen {
		r.mu.Unlock()
		return s
	}
	r.mu.Unlock()
	// A new text: judge it outside the lock (the judge may parse it).
	var t *session.Traits
	if r.Judge != nil {
		t = r.Judge(query)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.byKey[key].Value(); s != nil && s.gen >= gen {
		return s
	}
	s := r.newStmt(key, query, types)
	s.Traits = t
	return s
}

// newStmt names a statement and makes it the one for key. The caller holds r.mu.
func (r *Registry) newStmt(key, query string, types []byte) *Stmt {
	r.next++
	s := &Stmt{Name: prefix + strconv.FormatUint(r.next, 10), key: key, Query: query, gen: r.schemaGen.Load()}
	s.parse = protocol.AppendParse(nil, s.Name, query, types)
	ptr := weak.Make(s)
	r.byKey[key] = ptr
	runtime.AddCleanup(s, r.forget, entry{key: key, ptr: ptr})
	return s
}

// Renew gives old's text a fresh server-side name, after a server said its cached plan
// no longer fits (the result type changed under it): the next use prepares it anew.
func (r *Registry) Renew(old *Stmt) *Stmt {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.byKey[old.key].Value(); cur != old && cur != nil {
		return cur // renewed already
	}
	_, _, types, _ := protocol.ParseParse(old.parse[5:])
	s := r.newStmt(old.key, old.Query, types)
	s.Traits = old.Traits
	return s
}

// NoteCommandTag bumps the schema generation when a server's CommandComplete tag says a
// DDL statement ran (CREATE, ALTER or DROP of anything).
func (r *Registry) NoteCommandTag(tag []byte) {
	if bytes.HasPrefix(tag, []byte("ALTER ")) || bytes.HasPrefix(tag, []byte("CREATE ")) || bytes.HasPrefix(tag, []byte("DROP ")) {
		r.schemaGen.Add(1)
	}
}

// SchemaGen is the schema generation: how many DDL statements have completed.
func (r *Registry) SchemaGen() uint64 { return r.schemaGen.Load() }

// Len is the number of statements in the registry: those still held, and those freed
// whose entries are not yet removed.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byKey)
}
