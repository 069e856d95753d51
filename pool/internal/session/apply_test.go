package session_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
)

func TestParamsOrder(t *testing.T) {
	login := map[string]string{"session_authorization": "app", "TimeZone": "UTC"}
	cases := []struct {
		name     string
		set      map[string]string // the server's record
		params   map[string]string // the client's
		resetAll bool
		want     string
	}{
		{
			name:   "nothing to do",
			set:    map[string]string{"work_mem": "1MB"},
			params: map[string]string{"work_mem": "1MB"},
		},
		{
			name:   "sorted, resets and sets",
			set:    map[string]string{"work_mem": "1MB", "myapp.tenant": "a"},
			params: map[string]string{"statement_timeout": "5s", "work_mem": "2MB", "a.b": "x"},
			want:   "SELECT set_config('a.b', 'x', false), set_config('myapp.tenant', NULL, false), set_config('statement_timeout', '5s', false), set_config('work_mem', '2MB', false)",
		},
		{
			name:   "identity last: superuser-only parameter, then session authorization, then role",
			set:    map[string]string{},
			params: map[string]string{"role": "unpriv", "session_authorization": "other", "log_min_duration_statement": "5s"},
			want:   "SELECT set_config('log_min_duration_statement', '5s', false), set_config('session_authorization', 'other', false), set_config('role', 'unpriv', false)",
		},
		{
			name:   "identity undone first, then restored",
			set:    map[string]string{"role": "unpriv", "session_authorization": "other", "log_min_duration_statement": "5s"},
			params: map[string]string{"role": "unpriv", "session_authorization": "other", "log_min_duration_statement": "6s"},
			want:   "SELECT set_config('role', NULL, false), set_config('session_authorization', NULL, false), set_config('log_min_duration_statement', '6s', false), set_config('session_authorization', 'other', false), set_config('role', 'unpriv', false)",
		},
		{
			name:   "another client's identity and privileged setting are undone in order",
			set:    map[string]string{"role": "unpriv", "session_authorization": "other", "log_min_duration_statement": "5s"},
			params: map[string]string{},
			want:   "SELECT set_config('role', NULL, false), set_config('session_authorization', NULL, false), set_config('log_min_duration_statement', NULL, false)",
		},
		{
			name:   "only the role changes",
			set:    map[string]string{"role": "r1"},
			params: map[string]string{"role": "r2"},
			want:   "SELECT set_config('role', 'r2', false)",
		},
		{
			name:     "RESET ALL after undoing the identity, then everything the client has",
			set:      map[string]string{"role": "unpriv", "work_mem": "1MB", "TimeZone": "Asia/Tokyo"},
			params:   map[string]string{"work_mem": "1MB", "TimeZone": "UTC", "search_path": "s"},
			resetAll: true,
			want:     "SELECT set_config('role', NULL, false); RESET ALL; SELECT set_config('search_path', 's', false), set_config('work_mem', '1MB', false)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sv := session.Server{Defaults: login, Set: tc.set}
			require.Equal(t, tc.want, session.Query(session.Plan(sv, tc.params, tc.resetAll)))
		})
	}
}

func TestRecordApplied(t *testing.T) {
	sv := session.Server{
		Defaults: map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY"},
		// TimeZone as its ParameterStatus recorded it after set_config.
		Set: map[string]string{"work_mem": "1MB", "myapp.tenant": "a", "TimeZone": "Etc/GMT"},
	}
	session.RecordApplied(sv, map[string]string{"work_mem": "2MB", "TimeZone": "GMT", "DateStyle": "German", "search_path": "s"})
	require.Equal(t, map[string]string{"work_mem": "2MB", "search_path": "s", "TimeZone": "Etc/GMT"}, sv.Set,
		"reported parameters are recorded from ParameterStatus; the others as applied, and the rest dropped")
	v, ok := sv.Value("search_path")
	require.True(t, ok)
	require.Equal(t, "s", v)
	v, _ = sv.Value("DateStyle")
	require.Equal(t, "ISO, MDY", v)
}

func TestRefusedError(t *testing.T) {
	e := session.RefusedError([]string{"myapp.x"}, "42704", "unrecognized configuration parameter", "d")
	require.Equal(t, "42704", e.Code)
	require.Equal(t, `session setting "myapp.x" could not be restored on a server connection: unrecognized configuration parameter`, e.Message)
	require.Equal(t, "d", e.Detail)
	e = session.RefusedError([]string{"a.b", "role"}, "22023", "m", "")
	require.Equal(t, `session settings "a.b", "role" could not be restored on a server connection: m`, e.Message)
}
