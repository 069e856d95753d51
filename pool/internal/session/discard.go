package session

import "github.com/jackc/pgx/v5/pgproto3"

// DiscardStatuses returns the ParameterStatus messages a server sends for DISCARD ALL in
// a session with settings s, appended to out: each reported parameter whose value
// changes, to its startup value or else to the server's default (defaults: what a server
// of the session's database and user reported at login, if known).
func (s *Settings) DiscardStatuses(out []byte, defaults map[string]string) []byte {
	for _, name := range reportedNames {
		if serverOnly[name] {
			continue
		}
		now, set := s.params[name]
		v, ok := s.startup[name]
		if !ok {
			v, ok = defaults[name]
		}
		if !set || !ok || now == v {
			continue
		}
		out, _ = (&pgproto3.ParameterStatus{Name: name, Value: v}).Encode(out)
	}
	return out
}
