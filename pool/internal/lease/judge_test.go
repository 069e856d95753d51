package lease

import (
	"testing"

	"github.com/cmlite/cmpool/router"
	"github.com/stretchr/testify/require"
)

// Judge keeps the last query's judgement for the same text only, and what it keeps is
// what each check alone would say.
func TestJudgeKeepsTheLastQueryOnly(t *testing.T) {
	c := &Client{}
	for _, q := range []string{
		"CREATE TEMP TABLE t (a int)", "CREATE TEMP TABLE t (a int)", "SELECT pg_advisory_lock(1)",
		"CREATE TEMP TABLE t (a int) ON COMMIT DROP", "SET cmpool.route = 'primary'", "LISTEN x", "",
		"SELECT pg_advisory_lock(1)", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
	} {
		j := c.Judge(q)
		kind, name := router.CommandOf(q)
		require.Equal(t, q, j.Q)
		require.Equal(t, kind, j.Kind, q)
		require.Equal(t, name, j.Name, q)
		require.Equal(t, router.PinsSession(q), j.G.PinsSession(), q)
		require.Equal(t, TempObjectOf(q), j.TempObject(), q)
		require.Equal(t, TempObjectOf(q), c.Judge(q).TempObject(), q)
	}
}
