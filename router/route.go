package router

// The routing decision: where a transaction goes, from what is known of it at its first
// message. It reads no server and waits for nothing; the pool does the I/O it asks for
// (the primary's WAL position for read-your-writes, the pick of a replica, the lookup of
// function volatility).

// Values of cmpool.route (SET, startup parameter, a database's route).
const (
	RouteAuto    = "auto"    // by the statement's verdict
	RoutePrimary = "primary" // every transaction on the primary
	RouteReplica = "replica" // reads and writes on a replica: a write there fails
)

// RouteInput is what the routing decision knows of a transaction at its first message.
// It is only asked for transactions that may be routed: replicas are configured, the
// pool mode is not session, the database is not mapped to a server of its own, and the
// transaction was not opened with a plain BEGIN held back (those all go to the primary).
type RouteInput struct {
	// Verdict is the classifier's verdict on the first statement; nil when it could not
	// be seen (a message streamed, a statement name not known).
	Verdict *Verdict
	// Session is cmpool.route for the session (RouteAuto, RoutePrimary or RouteReplica);
	// Local is a SET LOCAL cmpool.route for this transaction only, or "".
	Session, Local string
	// Override is the Router hook's answer: RoutePrimary or RouteReplica replace the
	// requested route; anything else, "" included, keeps it.
	Override string
}

// Requested is the route the client asked for: the statement's /* cmpool:... */ hint,
// else SET LOCAL cmpool.route, else the session's cmpool.route.
func (in *RouteInput) Requested() string {
	if in.Verdict != nil && in.Verdict.Hint != "" {
		return in.Verdict.Hint
	}
	if in.Local != "" {
		return in.Local
	}
	return in.Session
}

// Target is the kind of backend a transaction goes to.
type Target uint8

const (
	// TargetPrimary: the primary.
	TargetPrimary Target = iota
	// TargetReplica: a usable replica that has replayed the client's writes. When there
	// is none (or the primary's WAL position cannot be read), the primary, as a read:
	// neither forced nor counted as a write.
	TargetReplica
)

// String names the target.
func (t Target) String() string {
	if t == TargetReplica {
		return "replica"
	}
	return "primary"
}

// Decision is where a transaction goes.
type Decision struct {
	Target Target
	// Forced is set when the requested route or the Router hook, not the verdict, chose
	// Target: a write on a forced replica then fails (25006) instead of being replayed on
	// the primary.
	Forced bool
	// MayWrite is set when the transaction may write on the primary, so that its commit
	// must be noted for read-your-writes: unknown statements, writes other than session
	// settings, BEGIN without READ ONLY, COMMIT and the like, and calls of functions not
	// known to be safe. Always false with TargetReplica.
	MayWrite bool
	// CheckFuncs is set when a replica may serve the transaction only if none of the
	// verdict's Funcs is volatile. If one is, or that cannot be told, the transaction
	// goes to the primary, unforced, with MayWrite.
	CheckFuncs bool
}

// Decide routes a transaction. With RoutePrimary it goes to the primary, with
// RouteReplica to a replica (both forced); with RouteAuto (or any other value) reads
// that cannot write go to a replica and everything else to the primary.
func Decide(in RouteInput) Decision {
	v := in.Verdict
	route := in.Requested()
	if in.Override == RoutePrimary || in.Override == RouteReplica {
		route = in.Override
	}
	switch route {
	case RoutePrimary:
		return Decision{Target: TargetPrimary, Forced: true, MayWrite: mayWrite(v)}
	case RouteReplica:
		return Decision{Target: TargetReplica, Forced: true}
	}
	if v.PrimaryOnly() || v.ReadOnly && !v.Begin {
		return Decision{Target: TargetPrimary, MayWrite: mayWrite(v)}
	}
	return Decision{Target: TargetReplica, CheckFuncs: len(v.Funcs) > 0}
}

// PrimaryOnly reports whether the statement must run on the primary: it writes, opens a
// transaction that is not READ ONLY, or ends one. A nil verdict (a statement not seen)
// must.
func (v *Verdict) PrimaryOnly() bool {
	return v == nil || v.Write || v.Begin && !v.ReadOnly || v.End
}

// mayWrite reports whether a transaction starting with v may write data: see
// Decision.MayWrite.
func mayWrite(v *Verdict) bool {
	return v == nil || v.Write && !v.SessionOnly || v.Begin && !v.ReadOnly || v.End || len(v.Funcs) > 0
}

// Consistency modes: whose writes a read must see (see docs/routing.md).
const (
	// ConsistencyUser: every write made through cmpool by the same user on the same
	// database. It is the default: an application that spreads one request over several
	// connections, or over several containers that log in as one user, reads its writes.
	ConsistencyUser = "user"
	// ConsistencyOrigin: every write by the same user on the same database from the same
	// client address (one application host or container).
	ConsistencyOrigin = "origin"
	// ConsistencySession: the client connection's own writes only.
	ConsistencySession = "session"
	// ConsistencyGlobal: every write made through cmpool.
	ConsistencyGlobal = "global"
	// ConsistencyEventual: no write; only cmpool.min_lsn.
	ConsistencyEventual = "eventual"
)

// ScopeKey returns the key of the writes a client's reads must see besides its own, in
// consistency mode consistency: clients with the same key see each other's writes. addr
// is the client's address without its port ("" for a Unix socket). It returns "" when
// the mode shares no writes between clients (session, eventual, or a mode not known).
// The key is also what peered cmpool instances send each other about a write.
func ScopeKey(consistency, addr, database, user string) string {
	switch consistency {
	case ConsistencyGlobal:
		return "g"
	case ConsistencyUser:
		return "u\x00" + database + "\x00" + user
	case ConsistencyOrigin:
		return "o\x00" + database + "\x00" + user + "\x00" + addr
	}
	return ""
}

// CanArrive reports whether a replica may replay a write position target soon: the
// primary has flushed it (flushed, the newest pg_current_wal_flush_lsn() read), so that
// it is being streamed, or some replica has already received it (received, the largest
// pg_last_wal_receive_lsn() seen). Otherwise the commit is still in the primary's WAL
// buffers, as with synchronous_commit = off until the WAL writer flushes it (every
// wal_writer_delay, 200 ms by default): no replica can have it within rw_wait, and the
// read goes to the primary at once instead of waiting. A zero flushed (not read) does
// not say anything: the read may wait.
func CanArrive(target, flushed, received LSN) bool {
	return flushed == 0 || target <= flushed || target <= received
}
