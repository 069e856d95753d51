package session_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/router"
)

func TestResetsOf(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"RESET DateStyle", []string{"DateStyle"}},
		{"reset time zone", []string{"TimeZone"}},
		{"RESET work_mem", []string{"work_mem"}},
		{"RESET ALL", session.ResetAll},
		{"DISCARD ALL", session.ResetAll},
		{"SET DateStyle = ISO", nil},
		{"SET DateStyle TO DEFAULT", []string{"DateStyle"}},
		{"set session work_mem = default;", []string{"work_mem"}},
		{"SET TIME ZONE LOCAL", []string{"TimeZone"}},
		{"set time zone default", []string{"TimeZone"}},
		{"SET LOCAL DateStyle TO DEFAULT", nil},
		{"SET DateStyle TO 'default'", nil},
		{"SET DateStyle TO DEFAULT; SELECT 1", []string{"DateStyle"}},
		{"SET DateStyle TO DEFAULT, 'x'", nil},
		{"SET ROLE DEFAULT", nil},
		{"SELECT 1", nil},
	} {
		t.Run(tc.q, func(t *testing.T) {
			kind, name := router.CommandOf(tc.q)
			require.Equal(t, tc.want, session.ResetsOfQuery(tc.q, kind, name))
			require.Equal(t, tc.want, session.TraitsOf(tc.q).Resets)
		})
	}
}

func TestRestoreQuery(t *testing.T) {
	q := session.RestoreQuery(map[string]string{"work_mem": "7MB", "DateStyle": "German, DMY", "search_path": `"it's", public`})
	require.Equal(t, `SELECT pg_catalog.set_config(s.name, v.value, false) FROM (VALUES `+
		`('DateStyle', 'German, DMY'), ('search_path', '"it''s", public'), ('work_mem', '7MB')) v(name, value) `+
		`JOIN pg_catalog.pg_settings s ON lower(s.name) = lower(v.name) WHERE s.setting IS NOT DISTINCT FROM s.reset_val`, q)
}
