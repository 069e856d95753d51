package lease

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/router"
)

// TestTraitsResets: a query's traits name the parameters its first statement resets.
func TestTraitsResets(t *testing.T) {
	for _, q := range []string{"RESET DateStyle", "reset time zone", "RESET ALL", "DISCARD ALL", "SET DateStyle = ISO",
		"SET DateStyle TO DEFAULT; SELECT 1", "SET LOCAL DateStyle TO DEFAULT", "SELECT 1"} {
		t.Run(q, func(t *testing.T) {
			kind, name := router.CommandOf(q)
			require.Equal(t, session.ResetsOfQuery(q, kind, name), traitsOf(q).Resets)
		})
	}
	require.Equal(t, []string{"DateStyle"}, traitsOf("SET DateStyle TO DEFAULT").Resets)
}

func TestScheduleRestore(t *testing.T) {
	c := &Client{Settings: session.NewSettings(map[string]string{"DateStyle": "German, DMY", "work_mem": "7MB"})}
	c.Settings.MarkStartup()
	l := &Lease{c: c}
	l.scheduleRestore([]string{"TimeZone"}, 3)
	require.Zero(t, l.restoreSeg, "not a startup parameter: nothing to restore")
	l.scheduleRestore([]string{"DateStyle"}, 3)
	require.Equal(t, uint64(3), l.restoreSeg)
	require.Equal(t, []string{"DateStyle"}, l.restore)
	l.scheduleRestore(session.ResetAll, 3)
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
