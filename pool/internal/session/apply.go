package session

import (
	"fmt"
	"slices"
	"strings"

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
//     cmpool knowing their names (see ApplyReadback).
//  3. Every other parameter, set or reset, in sorted name order.
//  4. session_authorization, which also resets the role, then role.
//
// The steps go in one query, which PostgreSQL runs as one implicit transaction: if one
// fails, none took effect. Then each is tried alone on that server to find the ones it
// refuses (a custom setting whose prefix a library loaded since has reserved, a role
// that no longer exists); those are dropped from the client's settings and the client's
// statement fails once with the server's error (RefusedError). The server is closed,
// never reused.

// Server is what cmpool knows of one server's settings. Its maps are the server's
// record, shared, not copies.
type Server struct {
	// Defaults are the values the server reported at login.
	Defaults map[string]string
	// Set holds the parameters changed since login, with their current values.
	Set map[string]string
}

// Value returns the server's current value of a parameter as far as cmpool knows.
func (sv Server) Value(name string) (string, bool) {
	if v, ok := sv.Set[name]; ok {
		return v, true
	}
	v, ok := sv.Defaults[name]
	return v, ok
}

// Step is one change Plan makes: set Name to Value, or reset it (Value nil), or RESET
// ALL.
type Step struct {
	Name     string
	Value    *string
	ResetAll bool
}

// identityParams are applied last, in this order, and undone first.
var identityParams = []string{"session_authorization", "role"}

func isIdentityParam(n string) bool { return n == "session_authorization" || n == "role" }

// Plan returns the steps that take sv from what cmpool recorded of it to params, in the
// order above. resetAll clears the server's settings first.
func Plan(sv Server, params map[string]string, resetAll bool) []Step {
	if !resetAll && inSync(sv, params) {
		return nil // the common case, a server that already holds params: no allocation
	}
	return planSteps(sv, params, resetAll)
}

// inSync reports whether sv already holds params, so that Plan, without RESET ALL, has
// nothing to do: each parameter has the wanted value (a role of "none" may be absent),
// and nothing else was set.
func inSync(sv Server, params map[string]string) bool {
	if len(sv.Set) > len(params) {
		return false // something else was set
	}
	// One walk, over params: each of sv.Set's names found there is counted, and if all
	// are, nothing else was set (a map's names are distinct).
	inSet := 0
	for n, want := range params {
		cur, ok := sv.Set[n]
		if ok {
			inSet++
		} else {
			cur, ok = sv.Defaults[n]
		}
		if ok && cur == want || !ok && n == "role" && want == "none" {
			continue
		}
		return false
	}
	return inSet == len(sv.Set)
}

// planSteps is Plan without the in-sync shortcut.
func planSteps(sv Server, params map[string]string, resetAll bool) []Step {
	// recorded is the server's value of an ordinary parameter once steps 1 and 2 ran.
	recorded := func(n string) (string, bool) {
		if resetAll {
			v, ok := sv.Defaults[n]
			return v, ok
		}
		return sv.Value(n)
	}
	names := make([]string, 0, len(params)+len(sv.Set))
	for n := range params {
		names = append(names, n)
	}
	for n := range sv.Set {
		if _, ok := params[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var ordinary []Step
	for _, n := range names {
		if isIdentityParam(n) {
			continue
		}
		if want, ok := params[n]; ok {
			if cur, ok := recorded(n); !ok || cur != want {
				ordinary = append(ordinary, Step{Name: n, Value: &want})
			}
			continue
		}
		if _, ok := sv.Set[n]; ok && !resetAll {
			ordinary = append(ordinary, Step{Name: n})
		}
	}

	var steps []Step
	undo := len(ordinary) > 0 || resetAll
	undone := map[string]bool{}
	if undo {
		for _, n := range []string{"role", "session_authorization"} {
			if _, ok := sv.Set[n]; ok {
				steps = append(steps, Step{Name: n})
				undone[n] = true
			}
		}
	}
	if resetAll {
		steps = append(steps, Step{ResetAll: true})
	}
	steps = append(steps, ordinary...)
	for _, n := range identityParams {
		want, has := params[n]
		cur, ok := sv.Value(n)
		if undone[n] {
			cur, ok = sv.Defaults[n]
		}
		_, inSet := sv.Set[n]
		switch {
		case has && n == "role" && want == "none" && !ok:
		case has && (!ok || cur != want):
			steps = append(steps, Step{Name: n, Value: &want})
		case !has && inSet && !undone[n]:
			steps = append(steps, Step{Name: n})
		}
	}
	return steps
}

// Query renders steps as one simple query.
func Query(steps []Step) string {
	var b strings.Builder
	inSelect := false
	for _, st := range steps {
		if st.ResetAll {
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
		if st.Value != nil {
			v = router.QuoteLiteral(*st.Value)
		}
		fmt.Fprintf(&b, "set_config(%s, %s, false)", router.QuoteLiteral(st.Name), v)
	}
	return b.String()
}

// RecordApplied notes in sv.Set that the server now holds params, after the steps
// planned for them ran. Parameters the server reports were recorded from its
// ParameterStatus messages.
func RecordApplied(sv Server, params map[string]string) {
	for k, v := range params {
		if _, reported := sv.Defaults[k]; !reported {
			sv.Set[k] = v
		}
	}
	for k := range sv.Set {
		if _, ok := params[k]; !ok {
			delete(sv.Set, k)
		}
	}
}

// RefusedError is the client's error when a server refused the settings in dropped,
// which are removed from the session; code, message and detail are the server's error for
// the first of them.
func RefusedError(dropped []string, code, message, detail string) *protocol.Error {
	quoted := make([]string, len(dropped))
	for i, n := range dropped {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	what := "session setting " + strings.Join(quoted, ", ")
	if len(dropped) > 1 {
		what = "session settings " + strings.Join(quoted, ", ")
	}
	return &protocol.Error{
		Severity: protocol.SeverityError, Code: code,
		Message: fmt.Sprintf("%s could not be restored on a server connection: %s", what, message),
		Detail:  detail,
		Hint:    "the setting was removed from this session; its other settings are kept",
	}
}
