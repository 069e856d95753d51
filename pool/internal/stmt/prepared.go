package stmt

import (
	"container/list"
	"sync/atomic"
)

// Prepared is what one server connection has prepared: cmpool's shared statements, an
// LRU, and the unnamed statement of one client.
//
// Only its Len is safe to call from any goroutine; the rest belongs to whoever holds the
// server connection (under the holding client's session lock while a lease plans or
// relays on it).
type Prepared struct {
	cap    int
	order  *list.List // of *Stmt, most recent first
	byName map[string]*list.Element
	size   atomic.Int64 // order.Len(), readable by the admin console
	// unnamedOwner is the id of the Names whose unnamed statement (of generation
	// unnamedGen) the server holds, or 0.
	unnamedOwner, unnamedGen uint64
	// sql are the server-side names of the SQL-level statements it has (sqlprepare.go).
	sql map[string]struct{}
}

// Len is the number of statements prepared, safe to call from any goroutine.
func (l *Prepared) Len() int { return int(l.size.Load()) }

// NewPrepared returns an empty set that holds at most capacity statements (0: no limit).
func NewPrepared(capacity int) *Prepared {
	return &Prepared{cap: capacity, order: list.New(), byName: make(map[string]*list.Element)}
}

// has reports whether s is prepared, and marks it most recently used.
func (l *Prepared) has(s *Stmt) bool {
	e, ok := l.byName[s.Name]
	if ok {
		l.order.MoveToFront(e)
	}
	return ok
}

// add records s as prepared and returns the statements evicted to make room.
func (l *Prepared) add(s *Stmt, evicted []*Stmt) []*Stmt {
	if _, ok := l.byName[s.Name]; ok {
		return evicted
	}
	for l.cap > 0 && l.order.Len() >= l.cap {
		back := l.order.Back()
		old := back.Value.(*Stmt)
		l.order.Remove(back)
		delete(l.byName, old.Name)
		evicted = append(evicted, old)
	}
	l.byName[s.Name] = l.order.PushFront(s)
	l.size.Store(int64(l.order.Len()))
	return evicted
}

// remove forgets s, after a Parse of it failed.
func (l *Prepared) remove(name string) {
	if e, ok := l.byName[name]; ok {
		l.order.Remove(e)
		delete(l.byName, name)
		l.size.Store(int64(l.order.Len()))
	}
}

// restore records s as prepared again, as least recently used, after a Close of it was
// skipped by the server.
func (l *Prepared) restore(s *Stmt) {
	if _, ok := l.byName[s.Name]; !ok {
		l.byName[s.Name] = l.order.PushBack(s)
		l.size.Store(int64(l.order.Len()))
	}
}

// Clear forgets every statement, the unnamed one included, after the server dropped
// them (DISCARD ALL).
func (l *Prepared) Clear() {
	l.order.Init()
	clear(l.byName)
	l.size.Store(0)
	l.unnamedOwner = 0
	clear(l.sql)
}

// ForgetUnnamed records that the server's unnamed statement is no client's, after a
// simple query replaced it. It does nothing on a nil set (a server connection still
// logging in).
func (l *Prepared) ForgetUnnamed() {
	if l != nil {
		l.unnamedOwner = 0
	}
}
