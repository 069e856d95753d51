package pool

import (
	"bytes"
	"container/list"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Named prepared statements in transaction mode.
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
// Two queues on the lease (parses and closes in flight) say what to do with each
// ParseComplete and CloseComplete. After an ErrorResponse the server skips to Sync, so the
// entries of the current Sync segment are dropped, and what they would have created is
// forgotten.

// stmtPrefix starts every server-side statement name cmpool creates.
const stmtPrefix = "cmpool_"

// noopStmtName is never prepared: closing it is a no-op that yields CloseComplete.
const noopStmtName = stmtPrefix + "noop"

// noopStmt stands for a name in cmpool's namespace that the client never prepared: it is
// sent as noopStmtName, which no server has, so the server reports 26000.
var noopStmt = &preparedStmt{name: noopStmtName}

// preparedStmt is one statement text with its parameter types, under its server-side name.
type preparedStmt struct {
	name   string
	key    string // query and parameter types
	query  string
	parse  []byte // the Parse message servers get, header included
	traits queryTraits
	gen    uint64 // the registry's schema generation when it was named
}

// stmtRegistry hands out server-side names, one per distinct (text, parameter types).
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
type stmtRegistry struct {
	mu        sync.Mutex
	byKey     map[string]weak.Pointer[preparedStmt]
	next      uint64
	schemaGen atomic.Uint64
	// classifier judges how a statement may change settings (withSettingEffects); nil
	// means it is not asked.
	classifier *router.Classifier
}

func newStmtRegistry() *stmtRegistry {
	return &stmtRegistry{byKey: make(map[string]weak.Pointer[preparedStmt])}
}

// stmtEntry names a registry entry for its removal once its statement is freed.
type stmtEntry struct {
	key string
	ptr weak.Pointer[preparedStmt]
}

// forget drops e's entry, unless a newer statement for its key replaced it.
func (r *stmtRegistry) forget(e stmtEntry) {
	r.mu.Lock()
	if r.byKey[e.key] == e.ptr {
		delete(r.byKey, e.key)
	}
	r.mu.Unlock()
}

// get returns the statement for a Parse body's query and parameter-type section.
func (r *stmtRegistry) get(query string, types []byte) *preparedStmt {
	key := query + "\x00" + string(types)
	gen := r.schemaGen.Load()
	r.mu.Lock()
	if s := r.byKey[key].Value(); s != nil && s.gen >= gen {
		r.mu.Unlock()
		return s
	}
	r.mu.Unlock()
	// A new text: judge it outside the lock (the classifier may parse it).
	t := withSettingEffects(r.classifier, query, traitsOf(query))
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.byKey[key].Value(); s != nil && s.gen >= gen {
		return s
	}
	s := r.newStmt(key, query, types)
	s.traits = t
	return s
}

// newStmt names a statement and makes it the one for key. The caller holds r.mu.
func (r *stmtRegistry) newStmt(key, query string, types []byte) *preparedStmt {
	r.next++
	s := &preparedStmt{name: stmtPrefix + strconv.FormatUint(r.next, 10), key: key, query: query, gen: r.schemaGen.Load()}
	s.parse = protocol.AppendParse(nil, s.name, query, types)
	ptr := weak.Make(s)
	r.byKey[key] = ptr
	runtime.AddCleanup(s, r.forget, stmtEntry{key: key, ptr: ptr})
	return s
}

// renew gives old's text a fresh server-side name, after a server said its cached plan
// no longer fits (the result type changed under it): the next use prepares it anew.
func (r *stmtRegistry) renew(old *preparedStmt) *preparedStmt {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.byKey[old.key].Value(); cur != old && cur != nil {
		return cur // renewed already
	}
	_, _, types, _ := protocol.ParseParse(old.parse[5:])
	s := r.newStmt(old.key, old.query, types)
	s.traits = old.traits
	return s
}

// noteCommandTag bumps the schema generation when a server's CommandComplete tag says a
// DDL statement ran (CREATE, ALTER or DROP of anything).
func (r *stmtRegistry) noteCommandTag(tag []byte) {
	if bytes.HasPrefix(tag, []byte("ALTER ")) || bytes.HasPrefix(tag, []byte("CREATE ")) || bytes.HasPrefix(tag, []byte("DROP ")) {
		r.schemaGen.Add(1)
	}
}

// Len is the number of statements in the registry: those still held, and those freed
// whose entries are not yet removed.
func (r *stmtRegistry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byKey)
}

// stmtLRU is the set of statements one server connection has prepared.
type stmtLRU struct {
	cap    int
	order  *list.List // of *preparedStmt, most recent first
	byName map[string]*list.Element
	size   atomic.Int64 // order.Len(), readable by the admin console
}

// Len is the number of statements prepared, safe to call from any goroutine.
func (l *stmtLRU) Len() int { return int(l.size.Load()) }

func newStmtLRU(capacity int) *stmtLRU {
	return &stmtLRU{cap: capacity, order: list.New(), byName: make(map[string]*list.Element)}
}

// has reports whether s is prepared, and marks it most recently used.
func (l *stmtLRU) has(s *preparedStmt) bool {
	e, ok := l.byName[s.name]
	if ok {
		l.order.MoveToFront(e)
	}
	return ok
}

// add records s as prepared and returns the statements evicted to make room.
func (l *stmtLRU) add(s *preparedStmt, evicted []*preparedStmt) []*preparedStmt {
	if _, ok := l.byName[s.name]; ok {
		return evicted
	}
	for l.cap > 0 && l.order.Len() >= l.cap {
		back := l.order.Back()
		old := back.Value.(*preparedStmt)
		l.order.Remove(back)
		delete(l.byName, old.name)
		evicted = append(evicted, old)
	}
	l.byName[s.name] = l.order.PushFront(s)
	l.size.Store(int64(l.order.Len()))
	return evicted
}

// remove forgets s, after a Parse of it failed.
func (l *stmtLRU) remove(name string) {
	if e, ok := l.byName[name]; ok {
		l.order.Remove(e)
		delete(l.byName, name)
		l.size.Store(int64(l.order.Len()))
	}
}

// restore records s as prepared again, as least recently used, after a Close of it was
// skipped by the server.
func (l *stmtLRU) restore(s *preparedStmt) {
	if _, ok := l.byName[s.name]; !ok {
		l.byName[s.name] = l.order.PushBack(s)
		l.size.Store(int64(l.order.Len()))
	}
}

func (l *stmtLRU) clear() {
	l.order.Init()
	clear(l.byName)
	l.size.Store(0)
}

// What the relay does with a ParseComplete or CloseComplete.
const (
	replyForward      = iota // pass it on
	replyHide                // cmpool's own message: drop the reply
	replyAsParse             // a Close stood in for a Parse: send ParseComplete instead
	replyDupStatement        // a Parse that must fail with 42P05 naming the client's statement
)

// inflight is one Parse or Close sent to the server whose reply has not come back.
type inflight struct {
	action  int
	segment uint64        // how many Syncs and Queries were sent before it
	stmt    *preparedStmt // the statement a Parse (or stand-in Close) prepares
	client  string        // the client's name for stmt, if the client asked for it
}

// inflightQueue is a FIFO of in-flight Parses or Closes.
type inflightQueue struct {
	items []inflight
	head  int
}

func (q *inflightQueue) push(it inflight) { q.items = append(q.items, it) }

func (q *inflightQueue) pop() (inflight, bool) {
	if q.head >= len(q.items) {
		return inflight{}, false
	}
	it := q.items[q.head]
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return it, true
}

func (q *inflightQueue) peek() (inflight, bool) {
	if q.head >= len(q.items) {
		return inflight{}, false
	}
	return q.items[q.head], true
}

// dropSegment removes the entries of Sync segment seg (all at the front, since replies
// come in order) and passes each to drop.
func (q *inflightQueue) dropSegment(seg uint64, drop func(inflight)) {
	for q.head < len(q.items) && q.items[q.head].segment <= seg {
		drop(q.items[q.head])
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
}

func (q *inflightQueue) empty() bool { return q.head >= len(q.items) }

var parseCompleteMsg = []byte{'1', 0, 0, 0, 4}
