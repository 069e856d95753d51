package pool

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
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
			sc := &serverConn{Defaults: login, Set: tc.set}
			require.Equal(t, tc.want, paramsQuery(planParams(sc, tc.params, tc.resetAll)))
		})
	}
}

func TestParseReadback(t *testing.T) {
	got, funcs, err := parseReadback(`[[["work_mem", "4MB", false], ["work_mem", "4MB", true], ["myapp.x", null, false], ["timezone", "UTC", true]], {"f": [true, false, ["work_mem"]], "g": [false, false, []]}]`)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.True(t, got["work_mem"].session)
	require.Equal(t, "4MB", *got["work_mem"].value)
	require.Nil(t, got["myapp.x"].value)
	require.Equal(t, "UTC", *got["TimeZone"].value)
	require.Equal(t, map[string]judgement{"f": {mayChange: true, names: []string{"work_mem"}}, "g": {names: []string{}}}, funcs)
	for _, bad := range []string{`[[["x"]], {}]`, `[[]]`, `{}`, `[[], {"f": [true]}]`} {
		_, _, err = parseReadback(bad)
		require.Error(t, err, bad)
	}
}

// BenchmarkSettingEffects judges how a simple query may change settings untracked, as
// the client goroutine does for every simple query in transaction mode: a query that
// calls no function is judged by a glance, one that does by the classifier's cache.
func BenchmarkSettingEffects(b *testing.B) {
	cl := router.NewClassifier(0)
	for _, q := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		"SELECT my_func($1)",
		"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
	} {
		b.Run(q, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				withSettingEffects(cl, q, traitsOf(q))
			}
		})
	}
}
