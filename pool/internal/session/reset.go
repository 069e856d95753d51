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
// parameters whose final value differs from what the client last saw.
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
