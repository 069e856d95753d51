package pool

import (
	"testing"

	"github.com/stretchr/testify/require"

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
		{"RESET ALL", resetAll},
		{"DISCARD ALL", resetAll},
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
			require.Equal(t, tc.want, resetsOfQuery(tc.q, kind, name))
			require.Equal(t, tc.want, traitsOf(tc.q).resets)
		})
	}
}

func TestRestoreQuery(t *testing.T) {
	q := restoreQuery(map[string]string{"work_mem": "7MB", "DateStyle": "German, DMY", "search_path": `"it's", public`})
	require.Equal(t, `SELECT pg_catalog.set_config(s.name, v.value, false) FROM (VALUES `+
		`('DateStyle', 'German, DMY'), ('search_path', '"it''s", public'), ('work_mem', '7MB')) v(name, value) `+
		`JOIN pg_catalog.pg_settings s ON lower(s.name) = lower(v.name) WHERE s.setting IS NOT DISTINCT FROM s.reset_val`, q)
}

func TestScheduleRestore(t *testing.T) {
	c := &clientSession{initialParams: map[string]string{"DateStyle": "German, DMY", "work_mem": "7MB"}}
	l := &lease{c: c}
	l.scheduleRestore([]string{"TimeZone"}, 3)
	require.Zero(t, l.restoreSeg, "not a startup parameter: nothing to restore")
	l.scheduleRestore([]string{"DateStyle"}, 3)
	require.Equal(t, uint64(3), l.restoreSeg)
	require.Equal(t, []string{"DateStyle"}, l.restore)
	l.scheduleRestore(resetAll, 3)
	require.Equal(t, []string{"DateStyle", "*"}, l.restore)

	l.sentSeq, l.recvSeq = 2, 1
	require.False(t, l.restoring(), "the segment's end is not sent yet")
	require.False(t, l.restoreDue(), "segment 2 is being answered")
	l.sentSeq = 3
	require.True(t, l.restoring())
	l.recvSeq = 2
	require.True(t, l.restoreDue())
	l.recvSeq = 3
	require.False(t, l.restoreDue())
}
