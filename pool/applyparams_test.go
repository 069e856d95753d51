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
			sc := &serverConn{defaults: login, set: tc.set}
			require.Equal(t, tc.want, paramsQuery(planParams(sc, tc.params, tc.resetAll)))
		})
	}
}

func TestMayChangeSettings(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = $1", false},
		{"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;", false},
		{"BEGIN;", false},
		{"COMMIT; -- done", false},
		{"SET work_mem = '1MB'", false},
		{"select my_func()", true},
		{"SELECT 1; SET work_mem = '1MB'", true},
		{"DO $$BEGIN PERFORM 1; END$$", true},
		{"call p()", true},
		{"/* c */ LOAD 'plpgsql'", true},
		{"EXECUTE s", true},
		{"create extension hstore", true},
	} {
		require.Equal(t, tc.want, mayChangeSettings(tc.q), tc.q)
	}
	require.Zero(t, testing.AllocsPerRun(100, func() {
		mayChangeSettings("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	}))
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

func TestWithoutNumbers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT app_get(123456);", "SELECT app_get(0);"},
		{"SELECT f(0)", "SELECT f(0)"},
		{"SELECT f($1, 2.5e-3, .5, 1e10)", "SELECT f($1, 0, 0, 0)"},
		{"SELECT t2.c1 FROM t2 WHERE x = 42", "SELECT t2.c1 FROM t2 WHERE x = 0"},
		{"SELECT '12', \"a1\" -- 5\n, 7 /* 8 */", "SELECT '12', \"a1\" -- 5\n, 0 /* 8 */"},
		{"SELECT set_config('app.t', '42', false), 17", "SELECT set_config('app.t', '42', false), 0"},
		{"DO $$BEGIN PERFORM 1; END$$; SELECT 3", "DO $$BEGIN PERFORM 1; END$$; SELECT 0"},
		{"SELECT $a$ 12 $a$, 'it''s 3', 0x1F", "SELECT $a$ 12 $a$, 'it''s 3', 0x1F"},
	} {
		require.Equal(t, tc.want, withoutNumbers(tc.in), tc.in)
	}
	q := "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	require.Zero(t, testing.AllocsPerRun(100, func() { withoutNumbers(q) }))
}
