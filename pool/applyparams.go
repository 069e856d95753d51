package pool

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// The order in which a client's settings are applied on a server.
//
// PostgreSQL checks a parameter's privileges against the current role when it is set: a
// superuser-only parameter cannot be set, or reset, while the role is an unprivileged
// one, and SET ROLE works only for roles the session user may become. So the order is
// fixed, never a map walk:
//
//  1. If anything else changes, the server's own role, then its session authorization,
//     are undone first, so that the rest runs with the login user's privileges.
//  2. RESET ALL, when the server may hold placeholders an earlier client set without
//     cmpool knowing their names (see syncUntracked).
//  3. Every other parameter, set or reset, in sorted name order.
//  4. session_authorization, which also resets the role, then role.
//
// The steps go in one query, which PostgreSQL runs as one implicit transaction: if one
// fails, none took effect. Then each is tried alone on that server to find the ones it
// refuses (a custom setting whose prefix a library loaded since has reserved, a role
// that no longer exists); those are dropped from the client's settings and the client's
// statement fails once with the server's error. The server is closed, never reused.

// paramStep is one change applyParams makes: set name to value, or reset it (value nil),
// or RESET ALL.
type paramStep struct {
	name     string
	value    *string
	resetAll bool
}

// identityParams are applied last, in this order, and undone first.
var identityParams = []string{"session_authorization", "role"}

func isIdentityParam(n string) bool { return n == "session_authorization" || n == "role" }

// planParams returns the steps that take sc from what cmpool recorded of it to params,
// in the order above. resetAll clears the server's settings first.
func planParams(sc *serverConn, params map[string]string, resetAll bool) []paramStep {
	// recorded is the server's value of an ordinary parameter once steps 1 and 2 ran.
	recorded := func(n string) (string, bool) {
		if resetAll {
			v, ok := sc.Defaults[n]
			return v, ok
		}
		return sc.Param(n)
	}
	names := make([]string, 0, len(params)+len(sc.Set))
	for n := range params {
		names = append(names, n)
	}
	for n := range sc.Set {
		if _, ok := params[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var ordinary []paramStep
	for _, n := range names {
		if isIdentityParam(n) {
			continue
		}
		if want, ok := params[n]; ok {
			if cur, ok := recorded(n); !ok || cur != want {
				ordinary = append(ordinary, paramStep{name: n, value: &want})
			}
			continue
		}
		if _, ok := sc.Set[n]; ok && !resetAll {
			ordinary = append(ordinary, paramStep{name: n})
		}
	}

	var steps []paramStep
	undo := len(ordinary) > 0 || resetAll
	undone := map[string]bool{}
	if undo {
		for _, n := range []string{"role", "session_authorization"} {
			if _, ok := sc.Set[n]; ok {
				steps = append(steps, paramStep{name: n})
				undone[n] = true
			}
		}
	}
	if resetAll {
		steps = append(steps, paramStep{resetAll: true})
	}
	steps = append(steps, ordinary...)
	for _, n := range identityParams {
		want, has := params[n]
		cur, ok := sc.Param(n)
		if undone[n] {
			cur, ok = sc.Defaults[n]
		}
		_, inSet := sc.Set[n]
		switch {
		case has && n == "role" && want == "none" && !ok:
		case has && (!ok || cur != want):
			steps = append(steps, paramStep{name: n, value: &want})
		case !has && inSet && !undone[n]:
			steps = append(steps, paramStep{name: n})
		}
	}
	return steps
}

// paramsQuery renders steps as one simple query.
func paramsQuery(steps []paramStep) string {
	var b strings.Builder
	inSelect := false
	for _, st := range steps {
		if st.resetAll {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString("RESET ALL")
			inSelect = false
			continue
		}
		switch {
		case inSelect:
			b.WriteString(", ")
		case b.Len() > 0:
			b.WriteString("; SELECT ")
		default:
			b.WriteString("SELECT ")
		}
		inSelect = true
		v := "NULL"
		if st.value != nil {
			v = router.QuoteLiteral(*st.value)
		}
		fmt.Fprintf(&b, "set_config(%s, %s, false)", router.QuoteLiteral(st.name), v)
	}
	return b.String()
}

// recordApplied notes on sc that it now holds params, after the steps planned for them ran
// (with RESET ALL first if resetAll). Parameters the server reports were recorded from
// its ParameterStatus messages.
func recordApplied(sc *serverConn, params map[string]string, resetAll bool) {
	for k, v := range params {
		if _, reported := sc.Defaults[k]; !reported {
			sc.Set[k] = v
		}
	}
	for k := range sc.Set {
		if _, ok := params[k]; !ok {
			delete(sc.Set, k)
		}
	}
	if resetAll {
		sc.UnnamedSettings = false
	}
}

// restoreFailed runs after the server refused the steps applying a logged-in client's
// settings (first is its error; nothing took effect). Each step is tried alone, in order,
// to find the ones refused: those are dropped from the client's settings and reported in
// the returned error, whose SQLSTATE is the server's. If only resetting the server's own
// leftovers failed, the error is not the client's: a plain error is returned. Either way
// the caller closes the server.
func (c *clientSession) restoreFailed(ctx context.Context, sc *serverConn, steps []paramStep, first *pgconn.PgError) error {
	var dropped []string
	var cause *pgconn.PgError
	for _, st := range steps {
		res, err := sc.Exec(ctx, paramsQuery([]paramStep{st}))
		if err != nil {
			return err
		}
		if sc.TxStatus != 'I' {
			return fmt.Errorf("pool: server left in transaction after set_config: %s", first.Message)
		}
		if res.Err == nil || st.value == nil {
			continue
		}
		dropped = append(dropped, st.name)
		if cause == nil {
			cause = res.Err
		}
	}
	if len(dropped) == 0 {
		return fmt.Errorf("pool: server refused to restore session settings: %s (SQLSTATE %s)", first.Message, first.Code)
	}
	c.mu.Lock()
	params := maps.Clone(c.params)
	for _, n := range dropped {
		delete(params, n)
	}
	c.params = params
	c.paramsVersion++
	c.mu.Unlock()
	c.log.Warn("session setting could not be restored on a server connection; dropped", "settings", dropped, "error", cause.Message)
	quoted := make([]string, len(dropped))
	for i, n := range dropped {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	what := "session setting " + strings.Join(quoted, ", ")
	if len(dropped) > 1 {
		what = "session settings " + strings.Join(quoted, ", ")
	}
	return &protocol.Error{
		Severity: protocol.SeverityError, Code: cause.Code,
		Message: fmt.Sprintf("%s could not be restored on a server connection: %s", what, cause.Message),
		Detail:  cause.Detail,
		Hint:    "the setting was removed from this session; its other settings are kept",
	}
}
