package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Read/write routing: which backend a transaction goes to.
//
// The decision is made at the first message of each transaction, when the client has
// no server: its statement (a simple query, or the statement a Parse, Bind or Describe
// names) is classified by the router with the PostgreSQL grammar. Reads that cannot
// write go to a usable replica that has replayed the client's own writes; everything
// else, and every transaction opened with a plain BEGIN, goes to the primary. Session
// mode never routes: the client keeps its first server.

// backendPrimary is the backend index of the primary; replica i is i+1.
const backendPrimary = 0

// Routing values of cmpool.route and [databases.NAME] route.
const (
	routeAuto    = "auto"
	routePrimary = "primary"
	routeReplica = "replica"
)

// routeFor picks the backend for a transaction starting with msg (nil for a message
// read as a stream). replica is the replica set index when a replica was picked (the
// caller must call replicas.Done), else -1. forced is set when a hint, cmpool.route or
// the database's route chose the replica: then a write there fails instead of moving to
// the primary.
func (c *clientSession) routeFor(ctx context.Context, rs *router.ReplicaSet, typ byte, msg []byte) (backend, replica int, mayWrite, forced bool) {
	if rs == nil || c.mode == ModeSession || c.srv.conf().Databases[c.database].URL != "" {
		// Replicas replicate the primary: a database mapped elsewhere is not routed.
		return backendPrimary, -1, true, false
	}
	if c.beginDeferred {
		// A plain BEGIN opened the transaction: the primary, as for any plain BEGIN.
		return backendPrimary, -1, true, false
	}
	v := c.verdictFor(typ, msg)
	// Whether the transaction may write, so that its commit position must be read for
	// read-your-writes. Unknown statements, plain BEGIN and functions count as writes.
	mayWrite = v == nil || v.Write && !v.SessionOnly || v.Begin && !v.ReadOnly || v.End || len(v.Funcs) > 0
	route := c.route
	if c.routeOnce != "" {
		route = c.routeOnce
	}
	if v != nil && v.Hint != "" {
		route = v.Hint
	}
	if hook := c.srv.conf().Router; hook != nil {
		req := RouteRequest{Database: c.database, User: c.user, Write: true, Hinted: Route(route)}
		if route == routeAuto {
			req.Hinted = RouteDefault
		}
		req.Query, _ = c.queryFor(typ, msg)
		if v != nil {
			req.Write = v.Write || v.Begin && !v.ReadOnly || v.End
			req.Reason = v.Reason
		}
		switch hook.Route(req) {
		case RoutePrimary:
			route = routePrimary
		case RouteReplica:
			route = routeReplica
		}
	}
	switch route {
	case routePrimary:
		return backendPrimary, -1, mayWrite, true
	case routeReplica:
		forced = true
	default:
		if v == nil || v.Write || v.Begin && !v.ReadOnly || v.End || v.ReadOnly && !v.Begin {
			return backendPrimary, -1, mayWrite, false
		}
		if len(v.Funcs) > 0 && c.anyVolatile(ctx, v.Funcs) {
			return backendPrimary, -1, true, false
		}
	}
	min, err := c.readLSN(ctx, rs)
	if err != nil {
		c.log.Warn("could not read the primary's WAL position for read-your-writes; reading on the primary", "error", err)
		c.srv.routedPrimaryFallback.Add(1)
		return backendPrimary, -1, false, false
	}
	idx, ok := rs.Pick(min)
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
	return idx + 1, idx, false, forced
}

// loginOnReplica logs a client in on a usable replica when the primary failed with err, a
// connection failure: the replica proves the database and user exist as well, and the
// client's reads can be served while the primary is down. Session mode, and databases
// mapped to another server, never use replicas. It returns nil when no replica can serve.
func (c *clientSession) loginOnReplica(ctx context.Context, err error) (*backendPool, *puddle.Resource[*serverConn]) {
	rs := c.srv.rs()
	if rs == nil || c.mode == ModeSession || c.srv.conf().Databases[c.database].URL != "" {
		return nil, nil
	}
	var pgErr *pgconn.PgError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57P") {
		return nil, nil
	}
	idx, ok := rs.Pick(0)
	if !ok {
		return nil, nil
	}
	defer rs.Done(idx)
	bp, err := c.srv.poolFor(c.database, c.user, idx+1)
	if err != nil {
		return nil, nil
	}
	actx, cancel := c.waitContext(ctx)
	defer cancel()
	res, err := bp.Acquire(actx)
	if err != nil {
		return nil, nil
	}
	c.log.Debug("primary unavailable: logged in on a replica", "replica", idx)
	return bp, res
}

// verdictFor classifies the statement a transaction's first message runs, or returns
// nil when it cannot tell.
func (c *clientSession) verdictFor(typ byte, msg []byte) *router.Verdict {
	q, ok := c.queryFor(typ, msg)
	if !ok {
		return nil
	}
	return c.srv.classifier.Classify(q)
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
		return c.text(queryText(msg)), true
	case 'P':
		_, query, _, ok := protocol.ParseParse(body)
		if !ok {
			return "", false
		}
		return c.text(query), true
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
		if len(name) == 0 {
			if len(c.unnamed) == 0 {
				return "", false
			}
			_, query, _, _ := protocol.ParseParse(c.unnamed[protocol.HeaderLen:])
			return c.text(query), true
		}
		c.mu.Lock()
		stmt := c.stmts[string(name)]
		c.mu.Unlock()
		if stmt != nil {
			return stmt.query, true
		}
		for _, d := range c.deferred { // prepared in this batch, not sent yet
			if pname, query, _, ok := protocol.ParseParse(d[protocol.HeaderLen:]); ok && string(pname) == string(name) {
				return c.text(query), true
			}
		}
		return "", false
	}
	return "", false
}

// readLSN is the WAL position this client's reads must see. A write not yet resolved to a
// position (see noteWriteLocked) is resolved here, by a read of the primary's insert position
// sent after the write committed (rs.PrimaryLSNAfter). An error means no position could be
// read; the caller sends the read to the primary.
func (c *clientSession) readLSN(ctx context.Context, rs *router.ReplicaSet) (router.LSN, error) {
	consistency := c.srv.conf().Consistency
	c.mu.Lock()
	min, wrote := max(c.lastWriteLSN, c.minLSN), c.wroteAt
	if consistency == "eventual" {
		min, wrote = c.minLSN, time.Time{}
	}
	c.mu.Unlock()
	if consistency == "global" {
		if g := c.srv.lastWrite(); g.After(wrote) {
			wrote = g
		}
	}
	if wrote.IsZero() {
		return min, nil
	}
	lsn, err := c.resolveWrites(ctx, rs, wrote)
	return max(min, lsn), err
}

// resolveWrites reads the primary's insert position after the time wrote, and makes it the
// client's last write position if its own write not yet resolved committed by then.
func (c *clientSession) resolveWrites(ctx context.Context, rs *router.ReplicaSet, wrote time.Time) (router.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, c.srv.conf().ServerConnectTimeout)
	lsn, err := rs.PrimaryLSNAfter(ctx, wrote)
	cancel()
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if !c.wroteAt.IsZero() && !c.wroteAt.After(wrote) {
		c.wroteAt = time.Time{}
		c.lastWriteLSN = max(c.lastWriteLSN, lsn)
	}
	c.mu.Unlock()
	return lsn, nil
}

// noteWriteLocked records that a transaction that may have written on the primary has just
// committed (its server said ReadyForQuery, idle). Its position is not read now: the next
// read of this client (of any client, with consistency = global) resolves it, so that a
// write transaction costs no extra round trip. The caller holds c.mu.
func (c *clientSession) noteWriteLocked() {
	now := time.Now()
	c.wroteAt = now
	c.srv.noteWrite(now)
}

// lastWriteLSN resolves and returns the client's last write position, for SHOW
// cmpool.last_write_lsn.
func (c *clientSession) lastWritePosition(ctx context.Context) (router.LSN, error) {
	c.mu.Lock()
	wrote := c.wroteAt
	c.mu.Unlock()
	if rs := c.srv.rs(); rs != nil && !wrote.IsZero() {
		if _, err := c.resolveWrites(ctx, rs, wrote); err != nil {
			return 0, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastWriteLSN, nil
}

// anyVolatile reports whether any of the functions is volatile in the client's
// database, looking them up in pg_proc on the primary once and caching the answer.
// A failed lookup counts as volatile.
func (c *clientSession) anyVolatile(ctx context.Context, funcs []string) bool {
	for _, f := range funcs {
		key := c.database + "\x00" + f
		if v, ok := c.srv.volatile.Load(key); ok {
			if v.(bool) {
				return true
			}
			continue
		}
		vol, err := c.lookupVolatile(ctx, f)
		if err != nil {
			c.log.Debug("function volatility lookup failed", "function", f, "error", err)
			return true
		}
		c.srv.volatile.Store(key, vol)
		if vol {
			return true
		}
	}
	return false
}

func (c *clientSession) lookupVolatile(ctx context.Context, f string) (bool, error) {
	schema, name, qualified := strings.Cut(f, ".")
	if !qualified {
		schema, name = "", f
	}
	q := fmt.Sprintf(`SELECT coalesce(bool_or(p.provolatile = 'v'), true) FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = %s AND (%s = '' OR n.nspname = %s)`, router.QuoteLiteral(name), router.QuoteLiteral(schema), router.QuoteLiteral(schema))
	bp, err := c.poolAt(backendPrimary)
	if err != nil {
		return true, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.srv.conf().ServerConnectTimeout)
	defer cancel()
	res, err := bp.Acquire(ctx)
	if err != nil {
		return true, err
	}
	out, err := res.Value().Exec(ctx, q)
	if err != nil {
		res.Destroy()
		return true, err
	}
	bp.Release(res)
	if out.Err != nil || len(out.Row) != 1 {
		return true, errors.New("unexpected answer from pg_proc lookup")
	}
	return out.Row[0] == "t", nil
}

// poolAt returns this client's pool on a backend. The primary's pool is looked up again
// after a promotion changed which server is the primary.
func (c *clientSession) poolAt(backend int) (*backendPool, error) {
	if backend != backendPrimary {
		return c.srv.poolFor(c.database, c.user, backend)
	}
	if gen := c.srv.primaryGen.Load(); gen != c.poolGen {
		bp, err := c.srv.poolFor(c.database, c.user, backendPrimary)
		if err != nil {
			return nil, err
		}
		c.pool, c.poolGen = bp, gen
	}
	return c.pool, nil
}

// followPromotion makes replica index the primary: another tool promoted it (it reports
// pg_is_in_recovery() = false). Pools of the old primary are closed; clients find the new
// one at their next transaction.
func (s *Server) followPromotion(index int) {
	s.mu.Lock()
	if s.closing.Load() || index >= len(s.replicaCfgs) {
		s.mu.Unlock()
		return
	}
	newPrimary := s.replicaCfgs[index]
	s.log.Warn("a replica was promoted: it is now the primary", "host", newPrimary.Host, "port", newPrimary.Port)
	s.primaryCfg = newPrimary
	var old []*backendPool
	for key, bp := range s.pools {
		if key.backend == backendPrimary {
			old = append(old, bp)
			delete(s.pools, key)
		}
	}
	s.primaryGen.Add(1)
	s.retirePoolsLocked(old)
	s.mu.Unlock()
	s.promotions.Add(1)
	s.closeRetired(old)
}

// proxyCommand answers SET and SHOW of cmpool's own parameters. It reports whether the
// query was one.
func (c *clientSession) proxyCommand(q string) (bool, error) {
	if !router.ContainsFold(q, "cmpool.") {
		return false, nil
	}
	v := c.srv.classifier.Classify(q)
	if v.Statements != 1 || v.ProxySet == nil && v.ProxyShow == "" {
		return false, nil
	}
	// Earlier requests first: their replies may change what SHOW reports.
	c.mu.Lock()
	c.waitIdle()
	c.mu.Unlock()
	var reply []byte
	if v.ProxyShow != "" {
		val, perr := c.showSetting(v.ProxyShow)
		if perr != nil {
			reply = protocol.AppendErrorResponse(nil, perr)
		} else {
			reply = appendOneValue(nil, v.ProxyShow, val)
		}
	} else if perr := c.setSetting(v.ProxySet); perr != nil {
		reply = protocol.AppendErrorResponse(nil, perr)
	} else {
		reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SET")}).Encode(nil)
	}
	return true, c.replyLocally(reply)
}

func (c *clientSession) showSetting(name string) (string, *protocol.Error) {
	if name == "cmpool.last_write_lsn" {
		lsn, err := c.lastWritePosition(c.srv.ctx)
		if err != nil {
			return "", protocol.NewError(protocol.CodeConnectionFailure, fmt.Sprintf("could not read the primary's WAL position: %v", err))
		}
		return lsn.String(), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch name {
	case "cmpool.route":
		return c.route, nil
	case "cmpool.min_lsn":
		return c.minLSN.String(), nil
	}
	return "", protocol.NewError("42704", fmt.Sprintf("unrecognized configuration parameter %q", name))
}

func (c *clientSession) setSetting(s *router.Setting) *protocol.Error {
	val := strings.ToLower(strings.TrimSpace(s.Value))
	switch s.Name {
	case "cmpool.route":
		switch val {
		case routeAuto, routePrimary, routeReplica:
		default:
			return protocol.NewError("22023", fmt.Sprintf("invalid value for cmpool.route: %q (want primary, replica or auto)", s.Value))
		}
		c.mu.Lock()
		if s.Local {
			c.routeOnce = val
		} else {
			c.route = val
		}
		c.mu.Unlock()
		return nil
	case "cmpool.min_lsn":
		lsn, err := router.ParseLSN(strings.TrimSpace(s.Value))
		if err != nil {
			return protocol.NewError("22023", fmt.Sprintf("invalid value for cmpool.min_lsn: %v", err))
		}
		c.mu.Lock()
		c.minLSN = lsn
		c.mu.Unlock()
		return nil
	}
	return protocol.NewError("42704", fmt.Sprintf("unrecognized configuration parameter %q", s.Name))
}

// appendOneValue appends a one-column, one-row text result and its CommandComplete.
func appendOneValue(dst []byte, column, value string) []byte {
	dst, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
		Name: []byte(column), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1,
	}}}).Encode(dst)
	dst, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte(value)}}).Encode(dst)
	dst, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SHOW")}).Encode(dst)
	return dst
}
