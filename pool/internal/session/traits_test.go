package session_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/router"
)

func TestTraitsOf(t *testing.T) {
	for _, tc := range []struct {
		q                  string
		track              []string
		sessionBound, temp bool
	}{
		{q: "SELECT 1"},
		{q: "SET work_mem = '4MB'", track: []string{"work_mem"}},
		{q: "RESET work_mem", track: []string{"work_mem"}},
		{q: "SET search_path = s", track: []string{"search_path"}},
		{q: "SET application_name = 'a'"},
		{q: "SET TIME ZONE 'UTC'"},
		{q: "SET SESSION AUTHORIZATION other"},
		{q: "RESET ALL", track: []string{"*"}},
		{q: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", track: router.CharacteristicsParams},
		{q: "LISTEN ch", sessionBound: true},
		{q: "PREPARE p AS SELECT 1"}, // mapped to cmpool's statement names (stmt/sqlprepare.go)
		{q: "SELECT pg_advisory_lock(1)", sessionBound: true},
		{q: "CREATE TEMP TABLE t (a int) ON COMMIT DROP", temp: true},
	} {
		t.Run(tc.q, func(t *testing.T) {
			got := session.TraitsOf(tc.q)
			require.Equal(t, tc.track, got.Track)
			require.Equal(t, tc.sessionBound, got.SessionBound)
			require.Equal(t, tc.temp, got.MentionsTemp)
		})
	}
}

func TestWithSettingEffects(t *testing.T) {
	q := "SELECT set_config('myapp.tenant', '1', false)"
	plain := session.TraitsOf(q)
	require.Equal(t, plain, session.WithSettingEffects(nil, q, plain), "no classifier, no verdict")
	got := session.WithSettingEffects(router.NewClassifier(0), q, plain)
	require.True(t, got.Untracked)
	require.Equal(t, []string{"myapp.tenant"}, got.SettingNames)

	q = "SELECT abalance FROM pgbench_accounts WHERE aid = 1"
	require.Equal(t, session.TraitsOf(q), session.WithSettingEffects(router.NewClassifier(0), q, session.TraitsOf(q)))
}
