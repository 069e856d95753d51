package session

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/cmlite/cmpool/router"
)

// Settings changed without a ParameterStatus.
//
// A non-LOCAL SET or RESET of a parameter PostgreSQL does not report is noticed by
// statement; when the transaction that ran it ends, TrackedReadback reads the values
// back and ApplyTracked makes them the client's. set_config, a function or procedure
// body, or a DO block may change any setting, and nothing in the statement says which:
// then KnownReadback reads back the settings that were named, or UntrackedReadback every
// setting the server holds at session level and judges the user-defined functions that
// were called, and ApplyReadback makes what changed the client's. Either way the server's
// record is corrected, so that the next client gets its own values back.

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

// UntrackedReadback is the query to run when settings may have changed that
// nobody named, or functions are to be judged. Its one value is a JSON array: first
// [name, value, session] for every setting whose source is the session, for names
// (parameters cmpool knows of: the client's, the server's record, the ones the
// statements and functions named) and for the names in the source of funcs and of the
// functions they call (three calls deep; built-ins are not followed); then an object
// giving, for each of funcs that exists, [may change settings, may change ones it does
// not name, the names its source gives]. A value is null when no such parameter exists.
func UntrackedReadback(names, funcs []string) string {
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

// KnownReadback is the query to run when every setting that may have changed
// is named: the values of names alone, in UntrackedReadback's form.
func KnownReadback(names []string) string {
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

// ReadbackValue is one setting read back: its value (nil: no such parameter) and whether
// the session set it.
type ReadbackValue struct {
	Value   *string
	Session bool
}

// Judgement is what UntrackedReadback says of one function: whether it may change
// settings, whether it may change ones its source does not name (Opaque), and the names
// its source gives.
type Judgement struct {
	MayChange, Opaque bool
	Names             []string
}

// ParseReadback decodes the result of UntrackedReadback or KnownReadback: the settings
// by canonical parameter name, and the functions judged.
func ParseReadback(s string) (map[string]ReadbackValue, map[string]Judgement, error) {
	var doc []json.RawMessage
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return nil, nil, err
	}
	if len(doc) != 2 {
		return nil, nil, fmt.Errorf("session: malformed settings read back: %d parts", len(doc))
	}
	var rows [][]any
	if err := json.Unmarshal(doc[0], &rows); err != nil {
		return nil, nil, err
	}
	var raw map[string][]json.RawMessage
	if err := json.Unmarshal(doc[1], &raw); err != nil {
		return nil, nil, err
	}
	funcs := make(map[string]Judgement, len(raw))
	for f, parts := range raw {
		var j Judgement
		if len(parts) != 3 || json.Unmarshal(parts[0], &j.MayChange) != nil ||
			json.Unmarshal(parts[1], &j.Opaque) != nil || json.Unmarshal(parts[2], &j.Names) != nil {
			return nil, nil, fmt.Errorf("session: malformed function Judgement for %q", f)
		}
		funcs[f] = j
	}
	out := make(map[string]ReadbackValue, len(rows))
	for _, r := range rows {
		if len(r) != 3 {
			return nil, nil, fmt.Errorf("session: malformed setting read back: %v", r)
		}
		name, _ := r[0].(string)
		session, _ := r[2].(bool)
		rv := out[CanonicalName(name)]
		if v, ok := r[1].(string); ok {
			rv.Value = &v
		}
		rv.Session = rv.Session || session
		out[CanonicalName(name)] = rv
	}
	return out, funcs, nil
}

// TrackedReadback is the query that reads back names, the parameters a transaction
// changed with SET or RESET: one column per name, "" for a parameter that is not set.
func TrackedReadback(names []string) string {
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, n := range names {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "current_setting(%s, true)", router.QuoteLiteral(n))
	}
	return q.String()
}

// ApplyTracked makes row, TrackedReadback's answer for names, the session's values of
// names and the server's record (set), as a new version.
func (s *Settings) ApplyTracked(set map[string]string, names, row []string) {
	params := maps.Clone(s.params)
	for i, n := range names {
		v := row[i]
		if v == "" {
			delete(params, n)
			delete(set, n)
			continue
		}
		params[n] = v
		set[n] = v
	}
	s.Replace(params)
}

// ApplyReadback makes got, what ParseReadback read back from server sv, the session's
// values and the server's record (sv.Set); a new version only if the session's values
// changed. full: got came from UntrackedReadback, so an ordinary parameter the session
// did not set is back to its default. Reported parameters are left alone, since
// ParameterStatus follows them.
func (s *Settings) ApplyReadback(sv Server, got map[string]ReadbackValue, full bool) {
	params := maps.Clone(s.params)
	changed := false
	for n, rv := range got {
		if _, reported := sv.Defaults[n]; reported || serverOnly[n] {
			continue // ParameterStatus follows it
		}
		custom := strings.Contains(n, ".")
		unset := rv.Value == nil || // gone (a placeholder its library removed)
			n == "role" && *rv.Value == "none" || custom && *rv.Value == "" ||
			full && !rv.Session && !custom && n != "role" // back to its default
		if unset {
			delete(sv.Set, n)
			if _, ok := params[n]; ok {
				delete(params, n)
				changed = true
			}
			continue
		}
		// Read by name only, a value is kept as the client's even if it is the server's
		// default.
		sv.Set[n] = *rv.Value
		if cur, ok := params[n]; !ok || cur != *rv.Value {
			params[n] = *rv.Value
			changed = true
		}
	}
	if changed {
		s.Replace(params)
	}
}
