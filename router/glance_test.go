package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestSessionBound(t *testing.T) {
	require.False(t, router.SessionBound("CREATE TEMPORARY TABLE t (a int) ON COMMIT DROP"))
	require.True(t, router.SessionBound("SELECT PG_ADVISORY_LOCK(1)"))
	require.False(t, router.SessionBound("SELECT abalance FROM pgbench_accounts WHERE aid = 1"))
}

func TestPinsSession(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"SELECT pg_advisory_lock(4242)", true},
		{"select pg_try_advisory_lock(1, 2)", true},
		{"SELECT pg_advisory_lock_shared(7)", true},
		{"SELECT PG_TRY_ADVISORY_LOCK_SHARED(7)", true},
		{"SELECT pg_advisory_xact_lock(1)", false},
		{"SELECT pg_try_advisory_xact_lock(1)", false},
		{"SELECT pg_advisory_xact_lock_shared(1)", false},
		{"SELECT pg_advisory_unlock(4242)", false},
		{"SELECT pg_advisory_unlock_all()", false},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", true},
		{"declare c cursor without hold for select 1", false},
		{"DECLARE c CURSOR FOR SELECT 1", false},
		{"SELECT 'with hold'", false},
		{"begin; declare c cursor with hold for select 1; commit", true},
	} {
		t.Run(tc.q, func(t *testing.T) {
			require.Equal(t, tc.want, router.PinsSession(tc.q))
		})
	}
}

func TestMayReleaseSession(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"SELECT pg_advisory_unlock(4242)", true},
		{"SELECT pg_advisory_unlock_all()", true},
		{"CLOSE c", true},
		{"close all", true},
		{"DISCARD TEMP", true},
		{"DROP TABLE t", true},
		{"RESET ALL", true},
		{"SELECT 1", false},
		{"INSERT INTO t VALUES (1)", false},
	} {
		t.Run(tc.q, func(t *testing.T) {
			require.Equal(t, tc.want, router.MayReleaseSession(tc.q))
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
		require.Equal(t, tc.want, router.MayChangeSettings(tc.q), tc.q)
	}
	require.Zero(t, testing.AllocsPerRun(100, func() {
		router.MayChangeSettings("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	}))
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
		require.Equal(t, tc.want, router.WithoutNumbers(tc.in), tc.in)
	}
	q := "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	require.Zero(t, testing.AllocsPerRun(100, func() { router.WithoutNumbers(q) }))
}

// ClassifyWithoutNumbers gives the verdict Classify gives the text without numbers, from
// the same cache, and allocates nothing once that verdict is cached.
func TestClassifyWithoutNumbers(t *testing.T) {
	cl := router.NewClassifier(0)
	for _, q := range []string{
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (42, 7, 765432, -4321, CURRENT_TIMESTAMP);",
		"SELECT set_config('work_mem', '64MB', false), 12", "SELECT f(0)", "SELECT 1; SET work_mem = 1", "",
	} {
		v := cl.ClassifyWithoutNumbers(q)
		require.Same(t, cl.Classify(router.WithoutNumbers(q)), v, q)
		require.Same(t, v, cl.ClassifyWithoutNumbers(q), q)
		require.Zero(t, testing.AllocsPerRun(100, func() { cl.ClassifyWithoutNumbers(q) }), q)
	}
}

func BenchmarkClassifyWithoutNumbers(b *testing.B) {
	cl := router.NewClassifier(0)
	q := "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (42, 7, 765432, -4321, CURRENT_TIMESTAMP);"
	b.ReportAllocs()
	for b.Loop() {
		cl.ClassifyWithoutNumbers(q)
	}
}

// BenchmarkClassifyOfWithoutNumbers is what ClassifyWithoutNumbers replaced.
func BenchmarkClassifyOfWithoutNumbers(b *testing.B) {
	cl := router.NewClassifier(0)
	q := "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (42, 7, 765432, -4321, CURRENT_TIMESTAMP);"
	b.ReportAllocs()
	for b.Loop() {
		cl.Classify(router.WithoutNumbers(q))
	}
}
