// Package session is a client session's settings: the parameters a client wants on any
// server it uses, and the SQL that carries them from server to server. It holds no
// sockets and sends nothing: its functions take what a server and a client hold and
// return the query to send, or the changes to make of its answer. pool decides which
// server, and when.
//
//   - Settings is the client's parameters, their version and their startup values.
//   - TraitsOf and WithSettingEffects say what a statement may do to them (traits.go).
//   - Plan and Query bring a server to a client's parameters in one round trip (apply.go).
//   - ResetsOf, RestoreValues and RestoreQuery put startup values back after a RESET
//     (reset.go); DiscardStatuses is what DISCARD ALL reports (discard.go).
//   - TrackedReadback, KnownReadback and UntrackedReadback read settings back after a
//     transaction that changed them, and ApplyTracked and ApplyReadback make the answer the
//     client's (readback.go).
//   - TempObjectsQuery tells whether a server holds temporary objects (temp.go).
package session

import (
	"maps"
	"slices"
	"strings"
)

// ignoredStartup are startup parameters that are not session settings.
var ignoredStartup = map[string]bool{
	"user": true, "database": true, "options": true, "replication": true,
}

// IgnoredStartup reports whether startup parameter name is not a session setting (user,
// database, options, replication).
func IgnoredStartup(name string) bool { return ignoredStartup[name] }

// reported are the parameters PostgreSQL reports with ParameterStatus, in the spelling
// it uses, by lower-case name. Parameter names are case-insensitive; cmpool keeps these
// in the server's spelling and every other name in lower case, so that names compare
// equal.
var reported = func() map[string]string {
	m := make(map[string]string)
	for _, n := range []string{"application_name", "client_encoding", "DateStyle", "default_transaction_read_only",
		"in_hot_standby", "integer_datetimes", "IntervalStyle", "is_superuser", "scram_iterations", "search_path",
		"server_encoding", "server_version", "session_authorization", "standard_conforming_strings", "TimeZone"} {
		m[strings.ToLower(n)] = n
	}
	return m
}()

// reportedNames are the reported parameters' names in the server's spelling, sorted by
// their lower-case names.
var reportedNames = func() []string {
	var out []string
	for _, l := range slices.Sorted(maps.Keys(reported)) {
		out = append(out, reported[l])
	}
	return out
}()

// IsReported reports whether PostgreSQL reports the parameter of lower-case name lower
// with ParameterStatus.
func IsReported(lower string) bool {
	_, ok := reported[lower]
	return ok
}

// CanonicalName returns the name cmpool keeps parameter name under: the server's
// spelling for a reported parameter, else lower case.
func CanonicalName(name string) string {
	l := strings.ToLower(name)
	if n, ok := reported[l]; ok {
		return n
	}
	return l
}

// serverOnly are reported parameters that describe the server and cannot be set: they
// are passed to the client but never become its settings. in_hot_standby changes when a
// replica is promoted under a session.
var serverOnly = map[string]bool{
	"in_hot_standby": true, "integer_datetimes": true, "is_superuser": true,
	"server_encoding": true, "server_version": true,
}

// IsServerOnly reports whether name is a reported parameter that describes the server and
// cannot be set (server_version, in_hot_standby, …).
func IsServerOnly(name string) bool { return serverOnly[name] }

// Names returns the set of the canonical spellings (see CanonicalName) of names, as
// ignore_startup_parameters and track_extra_parameters list them.
func Names(names []string) map[string]bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[CanonicalName(strings.TrimSpace(n))] = true
	}
	return set
}
