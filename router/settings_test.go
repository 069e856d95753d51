package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestUntrackedSettings(t *testing.T) {
	cases := []struct {
		sql       string
		untracked bool
		opaque    bool
		names     []string
		funcs     []string
	}{
		{sql: "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
		{sql: "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"},
		{sql: "SELECT now(), lower($1), count(*) FROM t"},
		{sql: "SELECT current_setting('work_mem')"},
		{sql: "SELECT nextval('s')"},
		{sql: "SET work_mem = '1MB'"},
		{sql: "SET LOCAL work_mem = '1MB'"},
		{sql: "SELECT 1; SET LOCAL work_mem = '1MB'"},
		{sql: "SELECT set_config('myapp.tenant', $1, false)", untracked: true, names: []string{"myapp.tenant"}},
		{sql: "SELECT pg_catalog.set_config('work_mem', '1MB', false)", untracked: true, names: []string{"work_mem"}},
		{sql: "SELECT my_func(1)", funcs: []string{"my_func"}},
		{sql: "INSERT INTO t VALUES (app.f($1))", funcs: []string{"f"}},
		{sql: "CALL app.proc()", funcs: []string{"proc"}},
		{sql: "SELECT set_config('myapp.tenant', $1, true)"},
		{sql: "SELECT set_config('myapp.tenant', $1, $2)", untracked: true, names: []string{"myapp.tenant"}},
		{sql: "SELECT set_config($1, $2, false)", untracked: true, opaque: true},
		{sql: "SELECT set_config()", untracked: true, opaque: true},
		{sql: "DO $$BEGIN PERFORM set_config('myapp.a', 'x', false); SET myapp.b = 1; SET LOCAL Other.C TO 2; END$$", untracked: true, opaque: true,
			names: []string{"myapp.a", "myapp.b", "other.c"}},
		{sql: "LOAD 'plpgsql'", untracked: true, opaque: true},
		{sql: "EXECUTE s(1)", untracked: true, opaque: true},
		{sql: "CREATE EXTENSION hstore", untracked: true, opaque: true},
		{sql: "SELECT 1; SET work_mem = '1MB'; SET MyApp.X = 1; SET ROLE r", untracked: true, names: []string{"work_mem", "myapp.x", "role"}},
		{sql: "SELECT 1; RESET ALL", untracked: true, opaque: true},
		{sql: "SELECT 1; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", untracked: true, opaque: true},
		{sql: "SELECT 1; DISCARD ALL", untracked: true, opaque: true},
		{sql: "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('myapp.tenant', 'x', false); END$$"},
		{sql: "SELEC oops", untracked: true, opaque: true},
	}
	cl := router.NewClassifier(0)
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			v := cl.Classify(tc.sql)
			require.Equal(t, tc.untracked, v.UntrackedSettings)
			require.Equal(t, tc.opaque, v.OpaqueSettings)
			require.Equal(t, tc.names, v.SettingNames)
			require.Equal(t, tc.funcs, v.SettingFuncs)
		})
	}
}
