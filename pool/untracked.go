package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/cmlite/cmpool/router"
)

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
	if cl == nil || !router.MayChangeSettings(q) {
		return t
	}
	v := cl.Classify(router.WithoutNumbers(q))
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
func (l *lease) untrackedChanges() bool {
	c := l.c
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
func (l *lease) syncLease() bool {
	c := l.c
	c.mu.Lock()
	all := l.untrackedChanges()
	c.mu.Unlock()
	if all {
		return l.syncUntracked()
	}
	return l.syncTracked()
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
			" CROSS JOIN LATERAL regexp_matches(p.prosrc, " + router.QuoteLiteral(reCall) + ", 'g') m WHERE f.depth < 3)," +
			" g AS (SELECT f.root, f.depth, p.oid, p.proname, p.prolang, p.prosrc, p.oid >= 16384 AND (" +
			"p.prolang NOT IN (SELECT oid FROM pg_catalog.pg_language WHERE lanname IN ('sql', 'plpgsql'))" +
			" AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')" +
			" OR f.depth = 3 AND p.prosrc ~ " + router.QuoteLiteral(reCall) + ") AS untrusted FROM f JOIN pg_catalog.pg_proc p ON p.proname = f.name)," +
			" gn(root, n) AS (SELECT g.root, lower(m[1]) FROM g, regexp_matches(g.prosrc, " + router.QuoteLiteral(reSetName) + ", 'gi') m WHERE g.oid >= 16384" +
			" UNION SELECT g.root, lower(m[1]) FROM g, regexp_matches(g.prosrc, " + router.QuoteLiteral(reConfigName) + ", 'gi') m WHERE g.oid >= 16384" +
			" UNION SELECT g.root, lower(m[1]) FROM g, regexp_matches(g.prosrc, " + router.QuoteLiteral(reCustomName) + ", 'g') m WHERE g.oid >= 16384) ")
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
			"SELECT root, bool_or(g.proname = 'set_config' OR g.untrusted OR g.oid >= 16384 AND g.prosrc ~* " + router.QuoteLiteral(reSetsSome) + ") AS risky," +
			" bool_or(g.untrusted OR g.oid >= 16384 AND g.prosrc ~* " + router.QuoteLiteral(reOpaque) + ") AS opaque FROM g GROUP BY root) r))")
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
		b.WriteString(router.QuoteLiteral(n))
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
func (l *lease) syncUntracked() bool {
	c := l.c
	sc := l.sc
	c.mu.Lock()
	names := append([]string{"role"}, l.track...)
	names = append(names, l.settingNames...)
	for k := range c.params {
		names = append(names, k)
	}
	funcs, unnamed := l.settingFuncs, l.opaque
	c.mu.Unlock()
	for k := range sc.Set {
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
	res, err := sc.Exec(ctx, q)
	cancel()
	ok := err == nil && res.Err == nil && len(res.Row) == 1 && sc.TxStatus == 'I'
	var got map[string]readbackValue
	var judged map[string]judgement
	if ok {
		if got, judged, err = parseReadback(res.Row[0]); err != nil {
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
		c.log.Warn("could not read back session state", "error", err, "server_error", res.Err)
	} else {
		params := maps.Clone(c.params)
		changed := false
		for n, rv := range got {
			if _, reported := sc.Defaults[n]; reported || serverOnlyParams[n] {
				continue // ParameterStatus follows it
			}
			custom := strings.Contains(n, ".")
			unset := rv.value == nil || // gone (a placeholder its library removed)
				n == "role" && *rv.value == "none" || custom && *rv.value == "" ||
				full && !rv.session && !custom && n != "role" // back to its default
			if unset {
				delete(sc.Set, n)
				if _, ok := params[n]; ok {
					delete(params, n)
					changed = true
				}
				continue
			}
			// Read by name only, a value is kept as the client's even if it is the
			// server's default.
			sc.Set[n] = *rv.value
			if cur, ok := params[n]; !ok || cur != *rv.value {
				params[n] = *rv.value
				changed = true
			}
		}
		if changed {
			c.params = params
			c.paramsVersion++
		}
		sc.ConfiguredFor, sc.ConfiguredVersion = c.id, c.paramsVersion
		if unnamed {
			// Custom placeholders nobody named may be set too: they are the client's, on
			// this server only, until another client needs it (see applyParams).
			sc.UnnamedSettings = true
		}
	}
	l.track = nil
	l.untracked, l.opaque, l.settingNames, l.settingFuncs = false, false, nil, nil
	l.to(leaseReturning)
	if c.lease == l {
		c.lease = nil
	}
	c.idle.Broadcast()
	c.mu.Unlock()
	return ok
}
