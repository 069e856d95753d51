package session_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
)

func TestParseReadback(t *testing.T) {
	got, funcs, err := session.ParseReadback(`[[["work_mem", "4MB", false], ["work_mem", "4MB", true], ["myapp.x", null, false], ["timezone", "UTC", true]], {"f": [true, false, ["work_mem"]], "g": [false, false, []]}]`)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.True(t, got["work_mem"].Session)
	require.Equal(t, "4MB", *got["work_mem"].Value)
	require.Nil(t, got["myapp.x"].Value)
	require.Equal(t, "UTC", *got["TimeZone"].Value)
	require.Equal(t, map[string]session.Judgement{"f": {MayChange: true, Names: []string{"work_mem"}}, "g": {Names: []string{}}}, funcs)
	for _, bad := range []string{`[[["x"]], {}]`, `[[]]`, `{}`, `[[], {"f": [true]}]`} {
		_, _, err = session.ParseReadback(bad)
		require.Error(t, err, bad)
	}
}

func TestTrackedReadback(t *testing.T) {
	require.Equal(t, "SELECT current_setting('work_mem', true), current_setting('it''s', true)",
		session.TrackedReadback([]string{"work_mem", "it's"}))

	s := session.NewSettings(map[string]string{"work_mem": "1MB", "search_path": "a"})
	set := map[string]string{"work_mem": "1MB", "search_path": "a"}
	s.ApplyTracked(set, []string{"work_mem", "search_path", "statement_timeout"}, []string{"", "b", "5s"})
	require.Equal(t, uint64(1), s.Version())
	require.Equal(t, map[string]string{"search_path": "b", "statement_timeout": "5s"}, s.Clone())
	require.Equal(t, map[string]string{"search_path": "b", "statement_timeout": "5s"}, set)
}

func TestApplyReadback(t *testing.T) {
	str := func(s string) *string { return &s }
	newServer := func() session.Server {
		return session.Server{
			Defaults: map[string]string{"TimeZone": "UTC"},
			Set:      map[string]string{"work_mem": "1MB", "myapp.gone": "x", "role": "r"},
		}
	}
	got := map[string]session.ReadbackValue{
		"TimeZone":          {Value: str("GMT"), Session: true}, // reported: left alone
		"server_version":    {Value: str("99")},                 // describes the server
		"work_mem":          {Value: str("4MB"), Session: true}, // changed
		"myapp.gone":        {},                                 // a placeholder removed
		"myapp.empty":       {Value: str("")},                   // a custom one set to ""
		"role":              {Value: str("none")},               // no role
		"search_path":       {Value: str(`"$user", public`)},    // default, not session
		"statement_timeout": {Value: str("5s"), Session: true},  // set by code nobody named
	}

	s := session.NewSettings(map[string]string{"work_mem": "1MB", "myapp.gone": "x", "role": "r", "search_path": "s"})
	sv := newServer()
	s.ApplyReadback(sv, got, true)
	require.Equal(t, uint64(1), s.Version())
	require.Equal(t, map[string]string{"work_mem": "4MB", "statement_timeout": "5s"}, s.Clone())
	require.Equal(t, map[string]string{"work_mem": "4MB", "statement_timeout": "5s"}, sv.Set)

	// Read by name only (KnownReadback), a value at its default is kept as the client's.
	s = session.NewSettings(map[string]string{"search_path": "s"})
	sv = newServer()
	s.ApplyReadback(sv, map[string]session.ReadbackValue{"search_path": {Value: str(`"$user", public`)}}, false)
	require.Equal(t, `"$user", public`, s.Value("search_path"))
	require.Equal(t, `"$user", public`, sv.Set["search_path"])

	// Nothing changed: no new version.
	s = session.NewSettings(map[string]string{"work_mem": "4MB"})
	s.ApplyReadback(newServer(), map[string]session.ReadbackValue{"work_mem": {Value: str("4MB"), Session: true}}, true)
	require.Zero(t, s.Version())
}
