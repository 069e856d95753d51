package lease

import (
	"context"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/router"
)

// Host is what a client's leases need of the rest of cmpool: its configuration,
// the shared registries, the counters and hooks, and a server on the primary. Its
// methods take no lock of the client's and may be called under any of them.
type Host interface {
	// Config returns the settings in force.
	Config() Config
	// Context ends when cmpool shuts down.
	Context() context.Context
	// Statements is the prepared-statement registry.
	Statements() *stmt.Registry
	// Classifier is the router's classifier.
	Classifier() *router.Classifier
	// StatementCounters are the counters of Parses answered without a server.
	StatementCounters() *stmt.Counters
	// NoteError counts an ErrorResponse cmpool itself sent the client.
	NoteError(code string)
	// NoteServerError counts an ErrorResponse from a server on its way to the client.
	NoteServerError(code string)
	// Report tells the observers what a ReadyForQuery ended. It is called with no lock
	// held: an observer may block.
	Report(r Report)
	// RelayFault is a test hook, run for each server message relayed; nil in production.
	RelayFault() func(typ byte)
	// EndTransaction records that the client's transaction ended; wrote: it may have
	// written on the primary (read-your-writes).
	EndTransaction(wrote bool)
	// NoteCommit records that a transaction that may have written on the primary has
	// just committed, before the client is told (read-your-writes across connections).
	// It may tell the peers, and so take a round trip to each.
	NoteCommit()
	// AcquirePrimary takes a server on the primary for the client, waiting at most
	// query_wait_timeout.
	AcquirePrimary(ctx context.Context) (*backend.Pool, *puddle.Resource[*backend.Conn], error)
	// ReadOnlyReplayed counts a read-only failure replayed on the primary.
	ReadOnlyReplayed()
	// AcquireRead takes a server for a read whose replica failed under it: a usable
	// replica that has replayed the client's writes (the failed one is banned by then),
	// else the primary unless replicaOnly. It waits at most query_wait_timeout. The
	// route says where the server is; a replica's slot is the caller's to give back.
	AcquireRead(ctx context.Context, replicaOnly bool) (*backend.Pool, *puddle.Resource[*backend.Conn], Route, error)
	// ReadReplayed counts a read replayed elsewhere after its replica failed.
	ReadReplayed()
	// Judgement returns the judgement of function f still in force, if any (gen is the
	// registry's schema generation, now a nanotime); Judged stores one.
	Judgement(f string, gen uint64, now int64) (session.Judgement, bool)
	Judged(f string, j session.Judgement, gen uint64, now int64)
	// LoggedIn reports whether the client's startup is complete.
	LoggedIn() bool
	// WaitServer suspends the client's inline relay of l on an event loop until l's server
	// sends more, and reports whether it did (see relayAfter); false means read on.
	WaitServer(l *Lease) bool
	// BlockHook is what a read or write of a server socket calls before it waits, while
	// the client holds it (backend.Conn.SetBlockHook).
	BlockHook() *func()
}

// Config is the part of the configuration leases use.
type Config struct {
	QueryTimeout, ServerConnectTimeout        time.Duration
	ClientIdleTimeout, IdleTransactionTimeout time.Duration
	SlowTransaction                           time.Duration
	// ServerResetQuery is run on a session-mode server before it goes back ("-": none).
	ServerResetQuery string
	// RouterHook: a Config.Router hook is set (a BEGIN is then never deferred).
	RouterHook bool
}

// Report is what a ReadyForQuery ended, for the observers: the durations of the
// request and of the transaction that ended, on backend, and the SQLSTATE of an
// ErrorResponse from the server.
type Report struct {
	Backend           string
	Query, Xact       time.Duration
	HasQuery, HasXact bool
	ErrCode           string
}
