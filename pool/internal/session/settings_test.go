package session_test

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
)

func TestNames(t *testing.T) {
	require.Equal(t, "TimeZone", session.CanonicalName("timezone"))
	require.Equal(t, "DateStyle", session.CanonicalName("DATESTYLE"))
	require.Equal(t, "work_mem", session.CanonicalName("Work_Mem"))
	require.Equal(t, "myapp.tenant", session.CanonicalName("MyApp.Tenant"))
	require.True(t, session.IsReported("timezone"))
	require.False(t, session.IsReported("TimeZone"), "by lower-case name")
	require.False(t, session.IsReported("work_mem"))
	require.True(t, session.IsServerOnly("server_version"))
	require.False(t, session.IsServerOnly("application_name"))
	for _, n := range []string{"user", "database", "options", "replication"} {
		require.True(t, session.IgnoredStartup(n), n)
	}
	require.False(t, session.IgnoredStartup("application_name"))
}

func TestSettingsVersion(t *testing.T) {
	s := session.NewSettings(map[string]string{"work_mem": "4MB", "TimeZone": "UTC"})
	require.Zero(t, s.Version())
	require.False(t, s.Set("work_mem", "4MB"), "same value: no new version")
	require.Zero(t, s.Version())
	require.True(t, s.Set("work_mem", "8MB"))
	require.Equal(t, uint64(1), s.Version())
	require.Equal(t, "8MB", s.Value("work_mem"))

	c := s.Clone()
	c["work_mem"] = "1MB"
	require.Equal(t, "8MB", s.Value("work_mem"), "a clone is the caller's")

	require.ElementsMatch(t, []string{"work_mem", "TimeZone"}, slices.Collect(s.Names()))

	s.Drop([]string{"work_mem"})
	require.Equal(t, uint64(2), s.Version())
	_, ok := s.Lookup("work_mem")
	require.False(t, ok)
	require.Equal(t, "1MB", c["work_mem"], "the clone is not the settings")

	var zero session.Settings
	require.True(t, zero.Set("application_name", "x"), "the zero value takes a setting")
	require.Equal(t, "x", zero.Value("application_name"))
}

func TestSettingsStartup(t *testing.T) {
	s := session.NewSettings(map[string]string{"TimeZone": "utc", "work_mem": "4MB", "client_encoding": "auto"})
	s.Adopt(map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY"})
	require.Equal(t, "UTC", s.Value("TimeZone"), "the server's spelling")
	_, ok := s.Lookup("DateStyle")
	require.False(t, ok, "only the client's own parameters are adopted")
	require.Zero(t, s.Version(), "the same setting: no new version")

	report := map[string]string{"TimeZone": "GMT", "server_version": "15"}
	s.Over(report)
	require.Equal(t, map[string]string{"TimeZone": "UTC", "server_version": "15"}, report)

	require.False(t, s.HasStartupOf("*"))
	s.MarkStartup()
	require.True(t, s.HasStartupOf("*"))
	require.True(t, s.HasStartupOf("work_mem"))
	require.False(t, s.HasStartupOf("search_path"))

	s.Set("work_mem", "8MB")
	s.Set("search_path", "s")
	require.Equal(t, map[string]string{"work_mem": "4MB"}, s.RestoreValues([]string{"work_mem", "search_path"}))
	require.Equal(t, map[string]string{"work_mem": "4MB", "TimeZone": "UTC"}, s.RestoreValues(session.ResetAll),
		"client_encoding=auto is valid at startup only")

	before := s.Version()
	s.Discard()
	require.Greater(t, s.Version(), before)
	require.Equal(t, map[string]string{"TimeZone": "UTC", "work_mem": "4MB", "client_encoding": "auto"}, s.Clone())

	// The startup values share the parameters' map until a change: no change by any
	// means after Discard may reach them.
	s.Set("work_mem", "16MB")
	s.Adopt(map[string]string{"TimeZone": "Etc/UTC"})
	require.Equal(t, map[string]string{"work_mem": "4MB", "TimeZone": "UTC"}, s.RestoreValues(session.ResetAll))
	s.Discard()
	s.Drop([]string{"work_mem"})
	s.ApplyTracked(map[string]string{}, []string{"TimeZone"}, []string{"GMT"})
	require.Equal(t, map[string]string{"work_mem": "4MB", "TimeZone": "UTC"}, s.RestoreValues(session.ResetAll))
	s.Discard()
	require.Equal(t, map[string]string{"TimeZone": "UTC", "work_mem": "4MB", "client_encoding": "auto"}, s.Clone())
}

func TestDiscardStatuses(t *testing.T) {
	s := session.NewSettings(map[string]string{"TimeZone": "UTC", "application_name": "a"})
	s.MarkStartup()
	s.Set("TimeZone", "Asia/Tokyo")    // back to its startup value
	s.Set("DateStyle", "German, DMY")  // back to the server's default
	s.Set("IntervalStyle", "iso_8601") // no default known: not reported
	s.Set("server_version", "99")      // describes the server
	s.Set("work_mem", "8MB")           // not reported
	s.Set("application_name", "a")     // unchanged
	defaults := map[string]string{"DateStyle": "ISO, MDY", "server_version": "15"}
	out := s.DiscardStatuses([]byte("x"), defaults)
	require.Equal(t, byte('x'), out[0], "appended")
	var got [][2]string
	for b := out[1:]; len(b) > 0; {
		var m pgproto3.ParameterStatus
		n := 1 + int(uint32(b[1])<<24|uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4]))
		require.Equal(t, byte('S'), b[0])
		require.NoError(t, m.Decode(b[5:n]))
		got = append(got, [2]string{m.Name, m.Value})
		b = b[n:]
	}
	require.Equal(t, [][2]string{{"DateStyle", "ISO, MDY"}, {"TimeZone", "UTC"}}, got, "sorted by name")
}

func TestFinalValues(t *testing.T) {
	require.Empty(t, session.FinalValues(nil))
	require.Equal(t, [][2]string{{"TimeZone", "UTC"}, {"DateStyle", "ISO"}},
		session.FinalValues([][2]string{{"TimeZone", "GMT"}, {"DateStyle", "ISO"}, {"TimeZone", "UTC"}}))
}

func TestSharedSettings(t *testing.T) {
	params := map[string]string{"application_name": "app", "TimeZone": "utc"}
	a, b := session.NewSharedSettings(params), session.NewSharedSettings(params)
	a.Adopt(map[string]string{"TimeZone": "UTC"}) // at login, as the server spells it
	a.MarkStartup()
	b.MarkStartup()
	require.True(t, a.Set("application_name", "a"))
	a.Drop([]string{"TimeZone"})
	require.Equal(t, map[string]string{"application_name": "app", "TimeZone": "utc"}, params, "a shared map is never written")
	require.Equal(t, "app", b.Value("application_name"))
	require.Equal(t, "utc", b.Value("TimeZone"))
	a.Discard()
	require.Equal(t, map[string]string{"application_name": "app", "TimeZone": "UTC"}, a.Clone(),
		"a's startup values are its own once adopted")
	require.True(t, b.Set("TimeZone", "GMT"))
	b.Discard()
	require.Equal(t, "utc", b.Value("TimeZone"))
	require.Equal(t, map[string]string{"application_name": "app", "TimeZone": "utc"}, params)

	empty := session.NewSharedSettings(nil)
	require.True(t, empty.Set("work_mem", "1MB"), "shared nil settings take a setting")
}

func TestSettingsSnapshot(t *testing.T) {
	s := session.NewSettings(map[string]string{"work_mem": "4MB"})
	snap := s.Snapshot()
	require.Equal(t, map[string]string{"work_mem": "4MB"}, snap)
	require.Zero(t, testing.AllocsPerRun(10, func() { _ = s.Snapshot() }), "a snapshot copies nothing")

	require.True(t, s.Set("work_mem", "8MB"))
	require.True(t, s.Set("search_path", "x"))
	require.Equal(t, map[string]string{"work_mem": "4MB"}, snap, "a change after a snapshot copies the map first")
	require.Equal(t, "8MB", s.Value("work_mem"))

	snap = s.Snapshot()
	s.Adopt(map[string]string{"work_mem": "8192kB"})
	require.Equal(t, "8MB", snap["work_mem"], "Adopt copies a snapshotted map too")
	require.Equal(t, "8192kB", s.Value("work_mem"))
}
