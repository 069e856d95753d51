package pool

import (
	"context"
	"sync"
	"time"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Read/write routing: which backend a transaction goes to.
//
// The decision is made at the first message of each transaction, when the client has
// no server: its statement (a simple query, or the statement a Parse, Bind or Describe
// names) is classified by the router with the PostgreSQL grammar, and router.Decide
// says where it goes from the verdict, the client's cmpool.route and the Router hook.
// Reads that cannot write go to a usable replica that has replayed the client's own
// writes; everything else, and every transaction opened with a plain BEGIN, goes to the
// primary. Session mode never routes: the client keeps its first server. This file does
// the I/O the decision needs: the primary's WAL position, the wait for a replica, the
// volatility of functions.

// backendPrimary is the backend index of the primary; replica i is i+1.
const backendPrimary = 0

// routable reports whether transactions of a client in mode on database may go to a
// replica: replicas are configured (rs), the pool mode is not session (the client keeps
// its first server), and the database is not mapped to another server (replicas
// replicate the primary).
func (s *Server) routable(rs *router.ReplicaSet, mode lease.Mode, database string) bool {
	return rs != nil && mode != lease.Session && s.conf().Databases[database].URL == ""
}

// routeFor picks the backend for a transaction starting with msg (nil for a message
// read as a stream), as router.Decide says, and does the I/O the decision needs.
// replica is the replica set index when a replica was picked (the caller must call
// replicas.Done), else -1. forced is set when a hint, cmpool.route, the database's route
// or the Router hook chose the replica: then a write there fails instead of moving to
// the primary.
func (c *clientSession) routeFor(ctx context.Context, rs *router.ReplicaSet, typ byte, msg []byte) (backend, replica int, mayWrite, forced bool) {
	if !c.srv.routable(rs, c.Mode, c.Database) || c.BeginDeferred {
		// Not routed, or a plain BEGIN held back opened the transaction: the primary, as
		// for any plain BEGIN.
		return backendPrimary, -1, true, false
	}
	q, seen := c.queryFor(typ, msg)
	var in router.RouteInput
	in.Session, in.Local = c.routing.requested()
	if seen {
		in.Verdict = c.srv.classifier.Classify(q)
	}
	if hook := c.srv.conf().Router; hook != nil {
		switch hook.Route(routeRequest(&in, c.Database, c.User, q)) {
		case RoutePrimary:
			in.Override = router.RoutePrimary
		case RouteReplica:
			in.Override = router.RouteReplica
		}
	}
	d := router.Decide(in)
	if d.Target == router.TargetPrimary {
		return backendPrimary, -1, d.MayWrite, d.Forced
	}
	if d.CheckFuncs && c.srv.volatile.any(ctx, c.Log, c.Database, in.Verdict.Funcs, c.pools.lookupVolatile) {
		return backendPrimary, -1, true, false
	}
	min, err := c.routing.readLSN(ctx, rs, c.Database, c.User)
	if err != nil {
		c.Log.Warn("could not read the primary's WAL position for read-your-writes; reading on the primary", "error", err)
		c.srv.routedPrimaryFallback.Add(1)
		return backendPrimary, -1, false, false
	}
	idx, ok := rs.Pick(min)
	if !ok && min > 0 && c.srv.conf().RWWait > 0 && !router.CanArrive(min, rs.PrimaryFlushedLSN(), rs.ReceivedLSN()) {
		// Not flushed on the primary yet (synchronous_commit = off): no replica can have
		// it within rw_wait.
		c.srv.readsNotWaited.Add(1)
		c.srv.routedPrimaryFallback.Add(1)
		return backendPrimary, -1, false, false
	}
	if !ok && min > 0 && c.srv.conf().RWWait > 0 {
		c.srv.readWaits.Add(1)
		wctx, cancel := context.WithTimeout(ctx, c.srv.conf().RWWait)
		idx, ok = rs.WaitFor(wctx, min)
		cancel()
	}
	if !ok {
		c.srv.routedPrimaryFallback.Add(1)
		return backendPrimary, -1, false, false
	}
	return idx + 1, idx, false, d.Forced
}

// routeRequest is what the Router hook is asked about the transaction in describes, of
// user on database; query is its first statement, "" when it was not seen.
func routeRequest(in *router.RouteInput, database, user, query string) RouteRequest {
	req := RouteRequest{Database: database, User: user, Query: query, Write: in.Verdict.PrimaryOnly()}
	if r := in.Requested(); r != router.RouteAuto {
		req.Hinted = Route(r)
	}
	if in.Verdict != nil {
		req.Reason = in.Verdict.Reason
	}
	return req
}

// queryFor returns the text of the statement a transaction's first message runs; ok is
// false when it cannot tell.
func (c *clientSession) queryFor(typ byte, msg []byte) (q string, ok bool) {
	if msg == nil {
		return "", false
	}
	body := msg[protocol.HeaderLen:]
	switch typ {
	case 'Q':
		return c.RouteText(c.Text(lease.QueryText(msg))), true // EXECUTE: what it runs
	case 'P':
		_, query, _, ok := protocol.ParseParse(body)
		if !ok {
			return "", false
		}
		return c.Text(query), true
	case 'B', 'D':
		var name []byte
		if typ == 'B' {
			_, rest, ok := protocol.CString(body)
			if !ok {
				return "", false
			}
			name, _, _ = protocol.CString(rest)
		} else if len(body) > 1 && body[0] == 'S' {
			name, _, _ = protocol.CString(body[1:])
		} else {
			return "", false
		}
		c.Mu.Lock()
		shared, raw, ok := c.Stmts.Query(name)
		c.Mu.Unlock()
		if raw == nil {
			return shared, ok
		}
		return c.Text(raw), true
	}
	return "", false
}

// routing is a client's routing state: cmpool.route for the session and for the next
// transaction only, and the WAL positions the client's reads must see. The client
// goroutine reads and changes it (SET, SHOW, the start of a transaction); the relay
// clears the one-transaction route and notes a write when a lease ends. mu is a leaf
// lock: it is taken alone or under clientSession.mu, and held across no I/O.
type routing struct {
	srv *Server // for the configuration and the shared last writes (see writeScopes)
	// addr is the client's address without its port, "" for a Unix socket; set before
	// the client logs in.
	addr string

	mu               sync.Mutex
	route, routeOnce string // guarded by mu
	// lastWriteLSN is the client's last write position read from the primary, and minLSN
	// its cmpool.min_lsn. Guarded by mu.
	lastWriteLSN, minLSN router.LSN
	// wroteAt is when a transaction that may have written last committed on the primary,
	// if its position is not read yet (see endTransaction); zero otherwise. Guarded by mu.
	wroteAt time.Time
	// scopeMode and scope cache router.ScopeKey for the client in mode scopeMode (the
	// mode may change with a reload). Guarded by mu.
	scopeMode, scope string
}

// requested is the client's cmpool.route for the session and for the next transaction.
func (r *routing) requested() (session, local string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.route, r.routeOnce
}

// scopeKey returns the key of the writes the client shares with others in the mode in
// force (router.ScopeKey), "" when it shares none.
func (r *routing) scopeKey(database, user string) string {
	mode := r.srv.conf().Consistency
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.scopeMode != mode {
		r.scopeMode, r.scope = mode, router.ScopeKey(mode, r.addr, database, user)
	}
	return r.scope
}

// noteCommit records, before the client is told, that a transaction of the client that
// may have written committed on the primary: the writes of its scope (router.ScopeKey)
// and the server's last write are now, and the peers are told. Reads of other clients
// that the application sends once it has the commit's answer then see it.
func (r *routing) noteCommit(database, user string) {
	now := time.Now()
	r.srv.noteWrite(now)
	if key := r.scopeKey(database, user); key != "" {
		r.srv.scopes.note(key, now)
		r.srv.tellPeers(database, user, r.addr)
	}
}

// endTransaction forgets the route for the next transaction only, once a transaction
// ended, and records, when wrote is set, that the transaction may have written on the
// primary and has just committed (its server said ReadyForQuery, idle). Its position is
// not read now: the next read of this client (of any client of the same scope) resolves
// it, so that a write transaction costs no extra round trip.
func (r *routing) endTransaction(wrote bool) {
	r.mu.Lock()
	r.routeOnce = ""
	var now time.Time
	if wrote {
		now = time.Now()
		r.wroteAt = now
	}
	key := r.scope
	r.mu.Unlock()
	if wrote {
		r.srv.noteWrite(now)
		if key != "" {
			r.srv.scopes.note(key, now)
		}
	}
}

// readLSN is the WAL position this client's reads must see. A write not yet resolved to a
// position (see endTransaction) is resolved here, by a read of the primary's insert
// position sent after the write committed (rs.PrimaryLSNAfter). An error means no position
// could be read; the caller sends the read to the primary.
func (r *routing) readLSN(ctx context.Context, rs *router.ReplicaSet, database, user string) (router.LSN, error) {
	consistency := r.srv.conf().Consistency
	key := r.scopeKey(database, user)
	r.mu.Lock()
	min, wrote := max(r.lastWriteLSN, r.minLSN), r.wroteAt
	if consistency == router.ConsistencyEventual {
		min, wrote = r.minLSN, time.Time{}
	}
	r.mu.Unlock()
	var shared time.Time
	switch {
	case consistency == router.ConsistencyGlobal:
		shared = r.srv.lastWrite()
	case key != "":
		shared = r.srv.scopes.last(key)
	}
	if shared.After(wrote) {
		wrote = shared
	}
	if wrote.IsZero() {
		return min, nil
	}
	lsn, err := r.resolveWrites(ctx, rs, wrote)
	return max(min, lsn), err
}

// resolveWrites reads the primary's insert position after the time wrote, and makes it the
// client's last write position if its own write not yet resolved committed by then.
func (r *routing) resolveWrites(ctx context.Context, rs *router.ReplicaSet, wrote time.Time) (router.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, r.srv.conf().ServerConnectTimeout)
	lsn, err := rs.PrimaryLSNAfter(ctx, wrote)
	cancel()
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	if !r.wroteAt.IsZero() && !r.wroteAt.After(wrote) {
		r.wroteAt = time.Time{}
		r.lastWriteLSN = max(r.lastWriteLSN, lsn)
	}
	r.mu.Unlock()
	return lsn, nil
}

// lastWritePosition resolves and returns the client's last write position, for SHOW
// cmpool.last_write_lsn.
func (r *routing) lastWritePosition(ctx context.Context) (router.LSN, error) {
	r.mu.Lock()
	wrote := r.wroteAt
	r.mu.Unlock()
	if rs := r.srv.rs(); rs != nil && !wrote.IsZero() {
		if _, err := r.resolveWrites(ctx, rs, wrote); err != nil {
			return 0, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastWriteLSN, nil
}

// writeScopes holds, per scope key (router.ScopeKey) other than the global one, when a
// transaction of that scope that may have written last committed. The zero value is
// empty and ready.
type writeScopes struct {
	mu sync.Mutex
	at map[string]time.Time // guarded by mu
}

// maxWriteScopes is the number of scopes above which note forgets the scopes with no
// write for scopeForget: enough for every (database, user) of a large installation; per
// client address (consistency = origin) the old addresses go.
const (
	maxWriteScopes = 10000
	scopeForget    = time.Minute
)

// note records a write of scope key committed at t.
func (w *writeScopes) note(key string, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.at == nil {
		w.at = make(map[string]time.Time)
	}
	if old, ok := w.at[key]; ok && !t.After(old) {
		return
	}
	if len(w.at) >= maxWriteScopes {
		for k, at := range w.at {
			if t.Sub(at) > scopeForget {
				delete(w.at, k)
			}
		}
	}
	w.at[key] = t
}

// last returns when a write of scope key last committed; zero if none is known.
func (w *writeScopes) last(key string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at[key]
}
