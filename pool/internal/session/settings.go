package session

import (
	"iter"
	"maps"
)

// Settings are a client's session parameters: the values it wants on any server it uses,
// by canonical name (CanonicalName), a version that counts their changes, and the values
// they had when the session started (what RESET and DISCARD ALL return to).
//
// Settings is not safe for concurrent use: its owner guards it (pool: the session
// mutex). A map returned by Clone is the caller's; one returned by Snapshot is only read.
//
// Most sessions never change what they started with, so the startup values share the
// parameters' map until the first change (shared), which copies it: an idle client holds
// one map, not two. The parameters may also be a map other sessions hold
// (NewSharedSettings), copied the same way.
type Settings struct {
	params  map[string]string
	version uint64
	startup map[string]string
	shared  bool // params is also startup's, or another's (NewSharedSettings): not written in place
}

// own makes params a map of its own before it is written in place.
func (s *Settings) own() {
	if s.shared {
		s.params, s.shared = maps.Clone(s.params), false
	}
}

// NewSettings returns settings holding params, which it keeps.
func NewSettings(params map[string]string) Settings {
	if params == nil {
		params = make(map[string]string)
	}
	return Settings{params: params}
}

// NewSharedSettings returns settings holding params, a map others may hold too: it is
// never written, but copied at the first change.
func NewSharedSettings(params map[string]string) Settings {
	return Settings{params: params, shared: true}
}

// Version counts the changes: a server configured at one version needs no comparison
// while the version stays.
func (s *Settings) Version() uint64 { return s.version }

// Lookup returns the value of parameter name.
func (s *Settings) Lookup(name string) (string, bool) {
	v, ok := s.params[name]
	return v, ok
}

// Value returns the value of parameter name, or "".
func (s *Settings) Value(name string) string { return s.params[name] }

// Clone returns a copy of the parameters.
func (s *Settings) Clone() map[string]string { return maps.Clone(s.params) }

// Snapshot returns the parameters as they are now, for reading only. The map stays
// shared until the next change, which copies it: where Clone copies on every call, a
// snapshot costs a copy only when the parameters change after it.
func (s *Settings) Snapshot() map[string]string {
	s.shared = true
	return s.params
}

// Names returns the parameters' names, in no order.
func (s *Settings) Names() iter.Seq[string] { return maps.Keys(s.params) }

// Set makes value the value of name (a ParameterStatus from the server). It reports
// whether that changed anything.
func (s *Settings) Set(name, value string) bool {
	if s.params[name] == value {
		return false
	}
	s.own()
	if s.params == nil {
		s.params = make(map[string]string)
	}
	s.params[name] = value
	s.version++
	return true
}

// Replace makes params the parameters, as a new version; it keeps params.
func (s *Settings) Replace(params map[string]string) {
	s.params, s.shared = params, false
	s.version++
}

// Drop removes names, as a new version.
func (s *Settings) Drop(names []string) {
	params := maps.Clone(s.params)
	for _, n := range names {
		delete(params, n)
	}
	s.Replace(params)
}

// Adopt takes, for each parameter that report has, the value in report (the server's
// spelling of it, such as its time zone name), without a new version: it is the same
// setting.
func (s *Settings) Adopt(report map[string]string) {
	for k, now := range s.params {
		if v, ok := report[k]; ok && v != now {
			s.own()
			s.params[k] = v
		}
	}
}

// Over writes into report, for each parameter report has, the client's value.
func (s *Settings) Over(report map[string]string) {
	for k, v := range s.params {
		if _, ok := report[k]; ok {
			report[k] = v
		}
	}
}

// MarkStartup records the parameters as they are now as the session's startup values.
func (s *Settings) MarkStartup() { s.startup, s.shared = s.params, true }

// Discard returns the parameters to their startup values, as DISCARD ALL does, as a new
// version.
func (s *Settings) Discard() {
	s.Replace(s.startup)
	s.shared = true
}
