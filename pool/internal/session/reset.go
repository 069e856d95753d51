package session

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cmlite/cmpool/router"
)

// Startup values and RESET.
//
// On a direct connection RESET, RESET ALL and DISCARD ALL return a parameter to the value
// the client gave at startup (in the startup packet, or as options=-c). cmpool's servers
// are opened without the client's parameters, which it applies with set_config; that
// does not change what the server resets to (PostgreSQL takes it from the startup packet
// only). So when a client's statement resets parameters it gave at startup, cmpool puts
// their startup values back on the same server right after the statement (RestoreQuery,
// for the parameters still at their reset value, so that a later SET in the same query
// string stands), before the client sees its ReadyForQuery; then it reports the
// parameters whose final value differs from what the client last saw (FinalValues).
// Which statements reset parameters is read from the first statement of a query, as for
// SET (router.CommandOf).

// ResetAll stands for every parameter in a list of parameters a statement resets.
var ResetAll = []string{"*"}

// ResetsOf returns the parameters a statement of kind and name (router.CommandOf) resets.
func ResetsOf(kind router.Command, name string) []string {
	switch kind {
	case router.CommandReset:
		return []string{CanonicalName(name)}
	case router.CommandResetAll, router.CommandDiscardAll:
		return ResetAll
	}
	return nil
}

// ResetsOfQuery is ResetsOf for query q, whose first statement router.CommandOf judged of
// kind and name: SET name TO DEFAULT resets too.
func ResetsOfQuery(q string, kind router.Command, name string) []string {
	if kind == router.CommandSet && router.IsSetToDefault(q) {
		return []string{CanonicalName(name)}
	}
	return ResetsOf(kind, name)
}

// HasStartupOf reports whether parameter name ("*": any parameter) has a startup value
// to restore.
func (s *Settings) HasStartupOf(name string) bool {
	if name == "*" {
		return len(s.startup) > 0
	}
	_, ok := s.startup[name]
	return ok
}

// RestoreValues returns the startup values to set again after a statement reset names
// (ResetAll: all), leaving out those valid at startup only.
func (s *Settings) RestoreValues(names []string) map[string]string {
	values := make(map[string]string)
	for _, n := range names {
		if n == "*" {
			maps.Copy(values, s.startup)
		} else if v, ok := s.startup[n]; ok {
			values[n] = v
		}
	}
	if v, ok := values["client_encoding"]; ok && strings.EqualFold(v, "auto") {
		delete(values, "client_encoding") // valid at startup only
	}
	return values
}

// RestoreQuery sets each parameter in values again, non-locally, where it is at its reset
// value.
func RestoreQuery(values map[string]string) string {
	var b strings.Builder
	b.WriteString("SELECT pg_catalog.set_config(s.name, v.value, false) FROM (VALUES ")
	for i, n := range slices.Sorted(maps.Keys(values)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%s, %s)", router.QuoteLiteral(n), router.QuoteLiteral(values[n]))
	}
	b.WriteString(") v(name, value) JOIN pg_catalog.pg_settings s ON lower(s.name) = lower(v.name)" +
		" WHERE s.setting IS NOT DISTINCT FROM s.reset_val")
	return b.String()
}

// FinalValues returns, from ParameterStatus values in the order received, the last value
// of each parameter, in the order they were first reported.
func FinalValues(reported [][2]string) [][2]string {
	last := make(map[string]string, len(reported))
	var order []string
	for _, r := range reported {
		if _, seen := last[r[0]]; !seen {
			order = append(order, r[0])
		}
		last[r[0]] = r[1]
	}
	out := make([][2]string, len(order))
	for i, n := range order {
		out[i] = [2]string{n, last[n]}
	}
	return out
}
