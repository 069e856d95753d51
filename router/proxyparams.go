package router

import (
	"fmt"
	"strings"
)

// cmpool's own parameters: a client sets and shows them like server parameters
// (SET [LOCAL] cmpool.route, SHOW cmpool.min_lsn, a cmpool.route startup parameter),
// and cmpool answers them itself (the classifier marks them in Verdict.ProxySet and
// Verdict.ProxyShow). The pool keeps their values in the client's session.
const (
	// ParamRoute is where the client's transactions go: RouteAuto, RoutePrimary or
	// RouteReplica.
	ParamRoute = "cmpool.route"
	// ParamMinLSN is a WAL position every replica read of the client must have replayed.
	ParamMinLSN = "cmpool.min_lsn"
	// ParamLastWriteLSN is the position of the client's last write; it can only be shown.
	ParamLastWriteLSN = "cmpool.last_write_lsn"
)

// ParseRoute reads a value of cmpool.route, in any case: RouteAuto, RoutePrimary or
// RouteReplica. The error quotes v as given.
func ParseRoute(v string) (string, error) {
	switch r := strings.ToLower(v); r {
	case RouteAuto, RoutePrimary, RouteReplica:
		return r, nil
	}
	return "", fmt.Errorf("invalid value for %s: %q (want primary, replica or auto)", ParamRoute, v)
}

// ParseMinLSN reads a value of cmpool.min_lsn: a WAL position, such as "16/B374D848",
// with spaces around it allowed.
func ParseMinLSN(v string) (LSN, error) {
	lsn, err := ParseLSN(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("invalid value for %s: %w", ParamMinLSN, err)
	}
	return lsn, nil
}
