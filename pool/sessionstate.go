package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Session state that outlives a transaction, in transaction and statement modes.
//
// Parameters PostgreSQL reports (TimeZone, application_name, …) follow the client through
// ParameterStatus. For the others (search_path on PostgreSQL 15, work_mem, role, …) a
// non-LOCAL SET or RESET is noticed by statement, and when the transaction that ran it
// ends, cmpool reads the values back with current_setting before the server goes back to
// the pool; they are then applied, like startup parameters, on any server the client uses.
//
// Session advisory locks and WITH HOLD cursors cannot follow a client from server to
// server. cmpool warns the client, and resets the server with DISCARD ALL before another
// client can get it, so nothing leaks.
//
// Temporary objects cannot follow it either, and a warning is not enough for them: once the
// server is reset, a later statement naming a temporary table reaches the permanent table
// of the same name (DROP TABLE t drops it). So a statement that creates a temporary object
// that could outlive its transaction (router.TempObject: anything but a table created ON
// COMMIT DROP) is refused with 0A000 before it reaches a server, in the simple and the
// extended protocol. What the grammar cannot show (a DO block or a function that creates
// one) is caught when the server is released: a transaction whose text mentions "temp" has
// the server checked for temporary objects, and reset if it holds any.

// queryTraits is what cmpool needs to know about a statement's text.
type queryTraits struct {
	track        []string // parameters it may change ("*" for RESET ALL)
	sessionBound bool     // uses something that outlives the transaction on the server
	// mentionsTemp: the text mentions temporary objects without creating one cmpool can
	// see (ON COMMIT DROP, a DO block, …); the server is checked for them when released.
	mentionsTemp bool
	// resets are the parameters it returns to their reset values (resetAll for RESET ALL
	// and DISCARD ALL): see scheduleRestore.
	resets []string
	// untracked: it may change settings it does not name (set_config, DO, …); opaque:
	// custom ones whose names it does not give either; settingNames are custom
	// parameters it names, settingFuncs the user-defined functions it calls, which may
	// change settings too (shared, read only; see router.Verdict).
	untracked, opaque          bool
	settingNames, settingFuncs []string
}

// traitsOf inspects the first statement of a query.
func traitsOf(q string) queryTraits {
	var t queryTraits
	kind, name := classifySQL(q)
	t.resets = resetsOfQuery(q, kind, name)
	switch kind {
	case sqlSet, sqlReset:
		switch {
		case name == "characteristics":
			t.track = characteristicsParams
		case name == "timezone" || name == "session_authorization":
			// Reported by the server: ParameterStatus covers it.
		default:
			if _, reported := reportedParams[name]; !reported || name == "search_path" {
				t.track = []string{name}
			}
		}
	case sqlResetAll:
		t.track = []string{"*"}
	case sqlListen, sqlPrepare:
		// Refused as simple queries; through the extended protocol they reach the server,
		// so the server is reset before anyone else gets it.
		t.sessionBound = true
		return t
	}
	t.sessionBound = sessionBound(q)
	t.mentionsTemp = containsFold(q, "temp")
	return t
}

// Startup values and RESET.
//
// On a direct connection RESET, RESET ALL and DISCARD ALL return a parameter to the value
// the client gave at startup (in the startup packet, or as options=-c). cmpool's servers
// are opened without the client's parameters, which it applies with set_config; that
// does not change what the server resets to (PostgreSQL takes it from the startup packet
// only). So when a client's statement resets parameters it gave at startup, cmpool puts
// their startup values back on the same server right after the statement, before the
// client sees its ReadyForQuery or can send anything else:
//
//   - When the statement is sent (its Query, or the Bind of it in the extended protocol),
//     its Sync segment is marked (lease.restoreSeg). The client goroutine sends nothing
//     more on the server until that segment's ReadyForQuery has been handled (claim).
//   - The relay holds the segment's ParameterStatus messages. At its ReadyForQuery, unless
//     the segment failed, it runs one hidden query that sets each startup value again
//     (set_config, non-local: inside a transaction block it is undone by ROLLBACK with the
//     RESET), for the parameters still at their reset value, so that a later SET in the
//     same query string stands. Then it sends the client one ParameterStatus per reported
//     parameter whose final value differs from what the client last saw, and the
//     ReadyForQuery.
//
// The client sees what a direct connection shows: the RESET's own reply, the startup
// values, and ParameterStatus consistent with them. Which statements reset parameters is
// read from the first statement of a query, as for SET (classifySQL).

// resetAll stands for every parameter in queryTraits.resets.
var resetAll = []string{"*"}

// resetsOf returns the parameters a statement of kind and name (classifySQL) resets.
func resetsOf(kind int, name string) []string {
	switch kind {
	case sqlReset:
		return []string{canonicalParamName(name)}
	case sqlResetAll, sqlDiscardAll:
		return resetAll
	}
	return nil
}

// resetsOfQuery is resetsOf for query q, whose first statement classifySQL judged of kind
// and name: SET name TO DEFAULT resets too.
func resetsOfQuery(q string, kind int, name string) []string {
	if kind == sqlSet && setToDefault(q) {
		return []string{canonicalParamName(name)}
	}
	return resetsOf(kind, name)
}

// scheduleRestore marks Sync segment seg of l: after it, the startup values of the
// parameters in names (resetAll: all) that the client gave at startup are set again. The
// caller holds c.mu.
func (c *clientSession) scheduleRestore(l *lease, names []string, seg uint64) {
	for _, n := range names {
		if n == "*" {
			if len(c.initialParams) > 0 {
				l.restore = appendUnique(l.restore, n)
				l.restoreSeg = seg
			}
			continue
		}
		if _, ok := c.initialParams[n]; ok {
			l.restore = appendUnique(l.restore, n)
			l.restoreSeg = seg
		}
	}
}

// restoring reports whether the client must wait before sending more on l: the segment
// after which startup values are restored has been sent and not yet answered. The
// caller holds c.mu.
func (l *lease) restoring() bool {
	return l.restoreSeg != 0 && l.sentSeq >= l.restoreSeg
}

// mustWait reports whether the client goroutine must wait for l's replies before it sends
// more (restoring): what was sent must then reach the server now.
func (c *clientSession) mustWait(l *lease) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.restoring()
}

// restoreDue reports whether the reply being relayed belongs to the segment after which
// startup values are restored. The caller holds c.mu.
func (l *lease) restoreDue() bool {
	return l.restoreSeg != 0 && l.restoreSeg == l.recvSeq+1
}

// holdStatus keeps a ParameterStatus of a segment whose startup values are to be
// restored, to be sent (or not) once they are; it reports whether it did. Relay only.
func (c *clientSession) holdStatus(l *lease, name, value string) bool {
	c.mu.Lock()
	due := l.restoreDue()
	c.mu.Unlock()
	if due {
		l.heldStatus = append(l.heldStatus, [2]string{name, value})
	}
	return due
}

// restoreStartup runs at the ReadyForQuery of a segment, before it is written to the
// client (the relay holds c.wmu). If the segment reset startup parameters and did not
// fail, it sets their startup values again on the server; then it writes the held
// ParameterStatus messages that change what the client sees. It reports whether it read
// from the server (the ReadyForQuery message read before is then overwritten). An error
// means the server cannot be trusted (it may be in a failed transaction the client does
// not know of).
func (c *clientSession) restoreStartup(l *lease) (ran bool, err error) {
	c.mu.Lock()
	if !l.restoreDue() {
		c.mu.Unlock()
		return false, nil
	}
	names, failed := l.restore, l.restoreFailed
	values := make(map[string]string)
	for _, n := range names {
		if n == "*" {
			maps.Copy(values, c.initialParams)
		} else if v, ok := c.initialParams[n]; ok {
			values[n] = v
		}
	}
	c.mu.Unlock()
	if v, ok := values["client_encoding"]; ok && strings.EqualFold(v, "auto") {
		delete(values, "client_encoding") // valid at startup only
	}
	reported := l.heldStatus
	l.heldStatus = nil
	if !failed && len(values) > 0 {
		l.wmu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), c.srv.conf().ServerConnectTimeout)
		res, err := l.sc.exec(ctx, restoreQuery(values))
		cancel()
		l.wmu.Unlock()
		if err == nil && res.err != nil {
			err = fmt.Errorf("restoring startup parameters after RESET: %w", res.err)
		}
		if err != nil {
			return true, err // the lease is destroyed, which wakes the client goroutine
		}
		reported = append(reported, res.reported...)
		ran = true
	}
	c.mu.Lock()
	l.restore, l.restoreSeg, l.restoreFailed = l.restore[:0], 0, false
	c.idle.Broadcast() // the client goroutine may send again
	c.mu.Unlock()
	// The last value of each parameter, in the order they were first reported.
	last := make(map[string]string, len(reported))
	var order []string
	for _, r := range reported {
		if _, seen := last[r[0]]; !seen {
			order = append(order, r[0])
		}
		last[r[0]] = r[1]
	}
	var out []byte
	for _, name := range order {
		c.mu.Lock()
		seen, known := c.params[name]
		c.mu.Unlock()
		if known && seen == last[name] {
			continue // the client's view did not change
		}
		c.noteParameterStatus(name, last[name])
		out, _ = (&pgproto3.ParameterStatus{Name: name, Value: last[name]}).Encode(out)
	}
	if len(out) > 0 {
		if _, err := c.w.Write(out); err != nil {
			return ran, errClientWrite
		}
	}
	return ran, nil
}

// noteRestoreFailed records an error in a segment whose startup values were to be
// restored: the statement did not take effect. Relay only.
func (c *clientSession) noteRestoreFailed(l *lease) {
	c.mu.Lock()
	if l.restoreDue() {
		l.restoreFailed = true
	}
	c.mu.Unlock()
}

// errClientWrite is restoreStartup's failure to write to the client.
var errClientWrite = errors.New("write to client failed")

// restoreQuery sets each parameter in values again, non-locally, where it is at its reset
// value.
func restoreQuery(values map[string]string) string {
	var b strings.Builder
	b.WriteString("SELECT pg_catalog.set_config(s.name, v.value, false) FROM (VALUES ")
	for i, n := range slices.Sorted(maps.Keys(values)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%s, %s)", quoteLiteral(n), quoteLiteral(values[n]))
	}
	b.WriteString(") v(name, value) JOIN pg_catalog.pg_settings s ON lower(s.name) = lower(v.name)" +
		" WHERE s.setting IS NOT DISTINCT FROM s.reset_val")
	return b.String()
}

// applyTraits records a statement sent on l. The caller holds c.mu. It reports whether
// the client should be warned now (the first session-bound statement of the lease).
func (c *clientSession) applyTraits(l *lease, t queryTraits) (warn bool) {
	if c.mode == ModeSession {
		return false
	}
	for _, n := range t.track {
		if n == "*" {
			for k := range c.params {
				if _, reported := reportedParams[strings.ToLower(k)]; !reported {
					l.track = appendUnique(l.track, k)
				}
			}
			l.track = appendUnique(l.track, "search_path")
			continue
		}
		l.track = appendUnique(l.track, canonicalParamName(n))
	}
	// Code cmpool cannot see (a user-defined function, DO, EXECUTE) may create temporary
	// objects as well as change settings: the server is checked for them too.
	if t.mentionsTemp || t.untracked || len(t.settingFuncs) > 0 {
		l.tempCheck = true
	}
	l.untracked = l.untracked || t.untracked
	l.opaque = l.opaque || t.opaque
	for _, n := range t.settingNames {
		l.settingNames = appendUnique(l.settingNames, n)
	}
	for _, f := range t.settingFuncs {
		l.settingFuncs = appendUnique(l.settingFuncs, f)
	}
	if t.sessionBound && !l.resetNeeded {
		l.resetNeeded = true
		return true
	}
	return false
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// warnSessionBound tells the client that what it just did will not outlive the
// transaction. It is written between whole messages, under wmu.
func (c *clientSession) warnSessionBound() {
	n := pgproto3.NoticeResponse{
		Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000",
		Message: fmt.Sprintf("session advisory locks and WITH HOLD cursors do not outlive the transaction in %s pooling mode", c.mode),
		Hint:    "cmpool resets the server connection when this transaction ends; use pool_mode = session for session state",
	}
	b, _ := n.Encode(nil)
	c.wmu.Lock()
	_, _ = c.w.Write(b)
	_ = c.w.Flush()
	c.wmu.Unlock()
}

// syncTracked reads back the parameters the lease's transactions changed, makes them the
// client's, and only then ends the lease. The client goroutine waits meanwhile (the lease
// is marked syncing), so nothing else is sent on the server. It reports whether the server
// is still usable.
func (c *clientSession) syncTracked(l *lease) bool {
	names := l.track
	var q strings.Builder
	q.WriteString("SELECT ")
	cols := len(names)
	for i, n := range names {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "current_setting(%s, true)", quoteLiteral(n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.conf().ServerConnectTimeout)
	res, err := l.sc.exec(ctx, q.String())
	cancel()
	ok := err == nil && res.err == nil && len(res.row) == cols && l.sc.txStatus == 'I'

	c.mu.Lock()
	if !ok {
		c.log.Warn("could not read back session state", "error", err, "server_error", res.err)
	} else if len(names) > 0 {
		params := maps.Clone(c.params)
		for i, n := range names {
			v := res.row[i]
			if v == "" {
				delete(params, n)
				delete(l.sc.set, n)
				continue
			}
			params[n] = v
			l.sc.set[n] = v
		}
		c.params = params
		c.paramsVersion++
		l.sc.configuredFor, l.sc.configuredVersion = c, c.paramsVersion
	}
	l.track = nil
	l.syncing = false
	if c.lease == l {
		c.lease = nil
	}
	c.idle.Broadcast()
	c.mu.Unlock()
	return ok
}

// resetServer runs DISCARD ALL on a server whose transaction used session-bound features,
// and forgets what cmpool knew of its state. It reports whether the server is usable.
func resetServer(sc *serverConn, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := sc.exec(ctx, "DISCARD ALL")
	if err != nil || res.err != nil || sc.txStatus != 'I' {
		return false
	}
	sc.set = make(map[string]string)
	sc.unnamedSettings = false
	sc.configuredFor = nil
	sc.prepared.clear()
	sc.unnamedOwner = nil
	return true
}

// tempObjectOf returns the temporary object query q creates that could outlive its
// transaction (see router.TempObject), or "". Only a text that mentions "temp" is parsed.
func tempObjectOf[T string | []byte](q T) string {
	if !containsFold(q, "temp") {
		return ""
	}
	return router.TempObject(string(q))
}

// refuseTempObject is the error for creating a temporary object outside session mode.
func (c *clientSession) refuseTempObject(what string) *protocol.Error {
	pe := protocol.NewError(protocol.CodeFeatureNotSupported,
		fmt.Sprintf("cannot create %s in %s pooling mode: temporary objects do not outlive the transaction, and later statements naming it would reach another object", what, c.mode))
	pe.Hint = "create temporary tables ON COMMIT DROP (or drop them in the same query string), or use pool_mode = session"
	return pe
}

// tempObjectsQuery tells whether the server holds temporary objects.
const tempObjectsQuery = "SELECT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())" +
	" OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace = pg_catalog.pg_my_temp_schema())" +
	" OR EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema())"

// dropTempObjects runs before a server whose transaction mentioned temporary objects goes
// back to the pool: if the server holds any (created where the grammar could not see, as
// in a DO block), it is reset, so that they reach no other client. It reports whether the
// server is usable.
func (c *clientSession) dropTempObjects(l *lease) bool {
	timeout := c.srv.conf().ServerConnectTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	res, err := l.sc.exec(ctx, tempObjectsQuery)
	cancel()
	if err != nil || res.err != nil || l.sc.txStatus != 'I' || len(res.row) != 1 {
		return false
	}
	if res.row[0] != "t" {
		return true
	}
	c.log.Warn("a transaction left temporary objects on a server; resetting it", "pool_mode", c.mode)
	return resetServer(l.sc, timeout)
}

// refuseListen is the error for LISTEN outside session mode.
func (c *clientSession) refuseListen() *protocol.Error {
	pe := protocol.NewError(protocol.CodeFeatureNotSupported,
		fmt.Sprintf("LISTEN is not supported in %s pooling mode: notifications would reach whichever client next uses the server", c.mode))
	pe.Hint = "listen on a connection with pool_mode = session, or connect directly"
	return pe
}

// Settings changed without SET or RESET.
//
// set_config, a function or procedure body, or a DO block may change any setting, and
// nothing in the statement says which. Such statements are found by the router's grammar
// (router.Verdict): only statements with a parenthesis, more than one statement or a
// first word that runs code are asked about (mayChangeSettings), so an ordinary query
// costs nothing more. When a lease ran one, syncUntracked reads the settings back before
// the server goes back to the pool: the named ones when every change is named, else
// every setting the server holds at session level. What changed becomes the client's
// own state, as on a direct connection, and the server's record is corrected, so that
// the next client gets its own values back.
//
// User-defined functions are judged by their source, in the same query: one whose body,
// or the body of a function it calls (three calls deep), may run SET, RESET, DISCARD,
// LOAD, EXECUTE or set_config, or that is written in a language other than SQL and
// PL/pgSQL and is not part of an extension (PostGIS, pgcrypto, … are trusted), may
// change settings; the names its source gives say which, unless it is opaque (dynamic
// SQL, a computed name, RESET ALL, another language). The answer is cached per database
// and function for funcSettingsTTL, and until DDL passes through cmpool; while a
// function is known not to change settings, calling it costs nothing more.
//
// Custom placeholders (myapp.tenant) set by such code cannot all be listed: PostgreSQL
// shows none in pg_settings. Those the statement, a DO body or the called functions'
// source names are read back. When code may have set others (a DO block, set_config
// with a computed name, a function that may change settings, …), the server is marked,
// and the next other client to use it gets RESET ALL before its own settings.

// withSettingEffects adds to t what the classifier says of how q may change settings
// without naming them. Statements that differ only in numbers share a verdict.
func withSettingEffects(cl *router.Classifier, q string, t queryTraits) queryTraits {
	if cl == nil || !mayChangeSettings(q) {
		return t
	}
	v := cl.Classify(withoutNumbers(q))
	t.untracked, t.opaque = v.UntrackedSettings, v.OpaqueSettings
	t.settingNames, t.settingFuncs = v.SettingNames, v.SettingFuncs
	return t
}

// funcSettingsTTL bounds how long cmpool trusts its judgement of a function (its
// definition may change outside cmpool).
const funcSettingsTTL = 10 * time.Second

// funcSettings is a cached judgement of one function (Server.funcSettings): whether it
// may change settings, whether it may change ones its source does not name (opaque),
// and the names its source does give.
type funcSettings struct {
	mayChange, opaque bool
	names             []string
	gen               uint64 // stmtRegistry.schemaGen when judged
	at                int64  // nanotime when judged
}

// judgedFunc returns the judgement of function f still in force, if any.
func (c *clientSession) judgedFunc(f string, gen uint64, now int64) (funcSettings, bool) {
	e, ok := c.srv.funcSettings.Load(c.database + "\x00" + f)
	if !ok {
		return funcSettings{}, false
	}
	fs := e.(funcSettings)
	if fs.gen != gen || now-fs.at > int64(funcSettingsTTL) {
		return funcSettings{}, false
	}
	return fs, true
}

// untrackedChanges reports whether l ran something that may have changed settings it
// does not name: a statement the router marked, or a function not known to leave them
// alone. The caller holds c.mu.
func (c *clientSession) untrackedChanges(l *lease) bool {
	if l.untracked {
		return true
	}
	if len(l.settingFuncs) == 0 {
		return false
	}
	gen, now := c.srv.stmts.schemaGen.Load(), nanotime()
	for _, f := range l.settingFuncs {
		if fs, ok := c.judgedFunc(f, gen, now); !ok || fs.mayChange {
			return true
		}
	}
	return false
}

// syncLease reads back what the lease's statements changed and ends the lease (see
// syncTracked). It reports whether the server is still usable.
func (c *clientSession) syncLease(l *lease) bool {
	c.mu.Lock()
	all := c.untrackedChanges(l)
	c.mu.Unlock()
	if all {
		return c.syncUntracked(l)
	}
	return c.syncTracked(l)
}

// Regular expressions over function source (prosrc): a call; a custom parameter name;
// a statement that may change settings; the name after SET or RESET, or given to
// set_config; and what makes the names a function may change unknowable (dynamic SQL, a
// computed set_config name, RESET ALL, a quoted name, SET SESSION CHARACTERISTICS).
// All but the first two are matched without regard to case.
const (
	reCall       = `([A-Za-z_][A-Za-z0-9_$]*)\s*\(`
	reCustomName = `([A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*)`
	reSetsSome   = `(^|;|\mbegin|\mthen|\melse|\mloop|\mdeclare)(\s|--[^\n]*\n)*(set|reset|discard|load)\M|\mexecute\M`
	reSetName    = `\m(?:set|reset)\s+(?:session\s+|local\s+)?([A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?)`
	reConfigName = `set_config\s*\(\s*'([^']+)'\s*,`
	reOpaque     = `\mexecute\M|set_config\s*\((?!\s*'[^']+'\s*,)|\mreset\s+all\M|\mcharacteristics\M|\m(?:set|reset)\s+(?:session\s+|local\s+)?"`
)

// untrackedReadback is the query syncUntracked runs when settings may have changed that
// nobody named, or functions are to be judged. Its one value is a JSON array: first
// [name, value, session] for every setting whose source is the session, for names
// (parameters cmpool knows of: the client's, the server's record, the ones the
// statements and functions named) and for the names in the source of funcs and of the
// functions they call (three calls deep; built-ins are not followed); then an object
// giving, for each of funcs that exists, [may change settings, may change ones it does
// not name, the names its source gives]. A value is null when no such parameter exists.
func untrackedReadback(names, funcs []string) string {
	var b strings.Builder
	if len(funcs) > 0 {
		b.WriteString("WITH RECURSIVE f(root, name, depth) AS (SELECT r, r, 0 FROM unnest(")
		writeArray(&b, funcs, "name")
		b.WriteString(") r UNION SELECT f.root, m[1]::name, f.depth + 1 FROM f JOIN pg_catalog.pg_proc p ON p.proname = f.name AND p.oid >= 16384" +
			" CROSS JOIN LATERAL regexp_matches(p.prosrc, " + quoteLiteral(reCall) + ", 'g') m WHERE f.depth < 3)," +
			" g AS (SELECT f.root, f.depth, p.oid, p.proname, p.prolang, p.prosrc, p.oid >= 16384 AND (" +
			"p.prolang NOT IN (SELECT oid FROM pg_catalog.pg_language WHERE lanname IN ('sql', 'plpgsql'))" +
			" AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')" +
			" OR f.depth = 3 AND p.prosrc ~ " + quoteLiteral(reCall) + ") AS untrusted FROM f JOIN pg_catalog.pg_proc p ON p.proname = f.name)," +
			" gn(root, n) AS (SELECT g.root, lower(m[1]) FROM g, regexp_matches(g.prosrc, " + quoteLiteral(reSetName) + ", 'gi') m WHERE g.oid >= 16384" +
			" UNION SELECT g.root, lower(m[1]) FROM g, regexp_matches(g.prosrc, " + quoteLiteral(reConfigName) + ", 'gi') m WHERE g.oid >= 16384" +
			" UNION SELECT g.root, lower(m[1]) FROM g, regexp_matches(g.prosrc, " + quoteLiteral(reCustomName) + ", 'g') m WHERE g.oid >= 16384) ")
	}
	b.WriteString("SELECT json_build_array((SELECT coalesce(json_agg(json_build_array(n, current_setting(n, true), s)), '[]') FROM (" +
		"SELECT name, true FROM pg_catalog.pg_settings WHERE source = 'session' UNION SELECT unnest(")
	writeArray(&b, names, "text")
	b.WriteString("), false")
	if len(funcs) > 0 {
		b.WriteString(" UNION SELECT n, false FROM gn")
	}
	b.WriteString(") x(n, s)), ")
	if len(funcs) > 0 {
		b.WriteString("(SELECT coalesce(json_object_agg(root, json_build_array(risky, opaque, " +
			"(SELECT coalesce(json_agg(DISTINCT gn.n), '[]') FROM gn WHERE gn.root = r.root))), '{}') FROM (" +
			"SELECT root, bool_or(g.proname = 'set_config' OR g.untrusted OR g.oid >= 16384 AND g.prosrc ~* " + quoteLiteral(reSetsSome) + ") AS risky," +
			" bool_or(g.untrusted OR g.oid >= 16384 AND g.prosrc ~* " + quoteLiteral(reOpaque) + ") AS opaque FROM g GROUP BY root) r))")
	} else {
		b.WriteString("'{}'::json)")
	}
	return b.String()
}

// knownReadback is the query syncUntracked runs when every setting that may have changed
// is named: the values of names alone, in untrackedReadback's form.
func knownReadback(names []string) string {
	var b strings.Builder
	b.WriteString("SELECT json_build_array((SELECT coalesce(json_agg(json_build_array(n, current_setting(n, true), false)), '[]') FROM unnest(")
	writeArray(&b, names, "text")
	b.WriteString(") n), '{}'::json)")
	return b.String()
}

// writeArray writes items as an SQL array literal of type typ.
func writeArray(b *strings.Builder, items []string, typ string) {
	b.WriteString("ARRAY[")
	for i, n := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteLiteral(n))
	}
	b.WriteString("]::" + typ + "[]")
}

// readbackValue is one setting read back: its value (nil: no such parameter) and whether
// the session set it.
type readbackValue struct {
	value   *string
	session bool
}

// judgement is what untrackedReadback says of one function.
type judgement struct {
	mayChange, opaque bool
	names             []string
}

// parseReadback decodes the result of untrackedReadback or knownReadback: the settings
// by canonical parameter name, and the functions judged.
func parseReadback(s string) (map[string]readbackValue, map[string]judgement, error) {
	var doc []json.RawMessage
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return nil, nil, err
	}
	if len(doc) != 2 {
		return nil, nil, fmt.Errorf("pool: malformed settings read back: %d parts", len(doc))
	}
	var rows [][]any
	if err := json.Unmarshal(doc[0], &rows); err != nil {
		return nil, nil, err
	}
	var raw map[string][]json.RawMessage
	if err := json.Unmarshal(doc[1], &raw); err != nil {
		return nil, nil, err
	}
	funcs := make(map[string]judgement, len(raw))
	for f, parts := range raw {
		var j judgement
		if len(parts) != 3 || json.Unmarshal(parts[0], &j.mayChange) != nil ||
			json.Unmarshal(parts[1], &j.opaque) != nil || json.Unmarshal(parts[2], &j.names) != nil {
			return nil, nil, fmt.Errorf("pool: malformed function judgement for %q", f)
		}
		funcs[f] = j
	}
	out := make(map[string]readbackValue, len(rows))
	for _, r := range rows {
		if len(r) != 3 {
			return nil, nil, fmt.Errorf("pool: malformed setting read back: %v", r)
		}
		name, _ := r[0].(string)
		session, _ := r[2].(bool)
		rv := out[canonicalParamName(name)]
		if v, ok := r[1].(string); ok {
			rv.value = &v
		}
		rv.session = rv.session || session
		out[canonicalParamName(name)] = rv
	}
	return out, funcs, nil
}

// syncUntracked reads back the settings after a lease that may have changed some
// without naming them, makes what changed the client's, corrects the server's record,
// and ends the lease. It reports whether the server is still usable.
//
// When every setting that may have changed is named (by the statements, or by the
// source of functions judged before), only those are read. Otherwise every setting whose
// source is the session is, and functions not judged yet are judged in the same query.
func (c *clientSession) syncUntracked(l *lease) bool {
	sc := l.sc
	c.mu.Lock()
	names := append([]string{"role"}, l.track...)
	names = append(names, l.settingNames...)
	for k := range c.params {
		names = append(names, k)
	}
	funcs, unnamed := l.settingFuncs, l.opaque
	c.mu.Unlock()
	for k := range sc.set {
		names = append(names, k)
	}
	gen, now := c.srv.stmts.schemaGen.Load(), nanotime()
	var judge []string
	for _, f := range funcs {
		fs, ok := c.judgedFunc(f, gen, now)
		if !ok {
			judge = append(judge, f)
			continue
		}
		names = append(names, fs.names...)
		unnamed = unnamed || fs.opaque
	}
	full := unnamed || len(judge) > 0
	q := knownReadback(names)
	if full {
		q = untrackedReadback(names, judge)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.conf().ServerConnectTimeout)
	res, err := sc.exec(ctx, q)
	cancel()
	ok := err == nil && res.err == nil && len(res.row) == 1 && sc.txStatus == 'I'
	var got map[string]readbackValue
	var judged map[string]judgement
	if ok {
		if got, judged, err = parseReadback(res.row[0]); err != nil {
			ok = false
		}
	}
	for _, f := range judge {
		j, found := judged[f]
		if found {
			c.srv.funcSettings.Store(c.database+"\x00"+f, funcSettings{mayChange: j.mayChange, opaque: j.opaque, names: j.names, gen: gen, at: now})
		}
		unnamed = unnamed || j.opaque || !found
	}

	c.mu.Lock()
	if !ok {
		c.log.Warn("could not read back session state", "error", err, "server_error", res.err)
	} else {
		params := maps.Clone(c.params)
		changed := false
		for n, rv := range got {
			if _, reported := sc.defaults[n]; reported || serverOnlyParams[n] {
				continue // ParameterStatus follows it
			}
			custom := strings.Contains(n, ".")
			unset := rv.value == nil || // gone (a placeholder its library removed)
				n == "role" && *rv.value == "none" || custom && *rv.value == "" ||
				full && !rv.session && !custom && n != "role" // back to its default
			if unset {
				delete(sc.set, n)
				if _, ok := params[n]; ok {
					delete(params, n)
					changed = true
				}
				continue
			}
			// Read by name only, a value is kept as the client's even if it is the
			// server's default.
			sc.set[n] = *rv.value
			if cur, ok := params[n]; !ok || cur != *rv.value {
				params[n] = *rv.value
				changed = true
			}
		}
		if changed {
			c.params = params
			c.paramsVersion++
		}
		sc.configuredFor, sc.configuredVersion = c, c.paramsVersion
		if unnamed {
			// Custom placeholders nobody named may be set too: they are the client's, on
			// this server only, until another client needs it (see applyParams).
			sc.unnamedSettings = true
		}
	}
	l.track = nil
	l.untracked, l.opaque, l.settingNames, l.settingFuncs = false, false, nil, nil
	l.syncing = false
	if c.lease == l {
		c.lease = nil
	}
	c.idle.Broadcast()
	c.mu.Unlock()
	return ok
}
