package pool

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cmlite/cmpool/protocol"
)

// Observer receives the proxy's events as they happen, for metrics and tracing
// (cmd/cmpool turns them into Prometheus histograms). Observe runs on the proxy's hot
// path: it must be fast, must not block and must be safe for concurrent use.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventQuery: a request (a simple query, or extended-protocol messages up to their
	// Sync) was answered; Duration is from its first message to its ReadyForQuery.
	EventQuery EventKind = iota + 1
	// EventTransaction: a transaction ended (ReadyForQuery idle); Duration is from its
	// first request to its end. A statement outside BEGIN is a transaction of its own.
	EventTransaction
	// EventWait: a client waited for a server connection; Duration is how long.
	EventWait
	// EventError: a client got an ErrorResponse, from a server or from cmpool; Code is
	// its SQLSTATE.
	EventError
	// EventRoute: a transaction was sent to Backend.
	EventRoute
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventQuery:
		return "query"
	case EventTransaction:
		return "transaction"
	case EventWait:
		return "wait"
	case EventError:
		return "error"
	case EventRoute:
		return "route"
	}
	return "unknown"
}

// Event is one thing that happened in the proxy.
type Event struct {
	Kind     EventKind
	Database string // as the client named it
	User     string // as the client named it
	// Backend is "primary", or a replica's host:port. Empty for errors raised before a
	// server was chosen.
	Backend  string
	Duration time.Duration
	Code     string // SQLSTATE, for EventError
}

// errorCounts counts ErrorResponses sent to clients by SQLSTATE class (the first two
// characters of the code).
type errorCounts struct {
	m sync.Map // class -> *atomic.Int64
}

func (e *errorCounts) add(code string) {
	class := code
	if len(class) > 2 {
		class = class[:2]
	}
	v, ok := e.m.Load(class)
	if !ok {
		v, _ = e.m.LoadOrStore(class, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

func (e *errorCounts) snapshot() map[string]int64 {
	out := make(map[string]int64)
	e.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// noteError counts an ErrorResponse cmpool itself sent to a client of database and user,
// with SQLSTATE code. (Errors from servers are counted by noteServerError.)
func (s *Server) noteError(database, user, code string) {
	if code == "" {
		code = protocol.CodeInternalError
	}
	s.errors.add(code)
	s.observer.Observe(Event{Kind: EventError, Database: database, User: user, Code: code})
}

// noteWait counts a wait of d for a server of bp, by a client of database and user.
func (s *Server) noteWait(database, user string, bp *backendPool, d time.Duration) {
	bp.Counters.Waits.Add(1)
	bp.Counters.WaitTime.Add(int64(d))
	s.observer.Observe(Event{Kind: EventWait, Database: database, User: user, Backend: bp.Name, Duration: d})
}
