package pool

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLowerWord(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"select", "select"},
		{"SELECT", "select"},
		{"Deallocate", "deallocate"},
		{"SET", "set"},
		{"Work_Mem", "work_mem"},
		{"A_VERY_LONG_PARAMETER_NAME", "a_very_long_parameter_name"},
		{"ÉTÉ", "été"},
		{"été", "été"},
		{"", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			require.Equal(t, tc.want, lowerWord(tc.in))
		})
	}
}

func TestClassifySQLCase(t *testing.T) {
	for _, tc := range []struct {
		q    string
		kind int
		name string
	}{
		{"SET Work_Mem = '64MB'", sqlSet, "work_mem"},
		{"set SESSION search_path TO a", sqlSet, "search_path"},
		{"RESET ALL", sqlResetAll, ""},
		{"Reset My.Setting", sqlReset, "my.setting"},
		{"DEALLOCATE PREPARE \"Stmt\"", sqlDeallocate, "Stmt"},
		{"DEALLOCATE S1", sqlDeallocate, "s1"},
		{"DISCARD ALL", sqlDiscardAll, ""},
		{"SELECT 1", sqlOther, ""},
		{"PREPARE TRANSACTION 'x'", sqlPrepareTransaction, ""},
		{"prepare /* c */ transaction E'x'", sqlPrepareTransaction, ""},
		{"PREPARE transaction AS SELECT 1", sqlPrepare, ""},
		{"PREPARE transaction (int) AS SELECT $1", sqlPrepare, ""},
		{"PREPARE q AS SELECT 1", sqlPrepare, ""},
		{"COMMIT PREPARED 'x'", sqlOther, ""},
		{"ROLLBACK PREPARED 'x'", sqlOther, ""},
	} {
		t.Run(tc.q, func(t *testing.T) {
			kind, name := classifySQL(tc.q)
			require.Equal(t, tc.kind, kind)
			require.Equal(t, tc.name, name)
		})
	}
	require.False(t, sessionBound("CREATE TEMPORARY TABLE t (a int) ON COMMIT DROP"))
	require.True(t, sessionBound("SELECT PG_ADVISORY_LOCK(1)"))
	require.False(t, sessionBound("SELECT abalance FROM pgbench_accounts WHERE aid = 1"))
}

// BenchmarkTraitsOf judges a simple query's first statement, as the client goroutine
// does for every simple query in transaction mode. The target is 0 allocs/op.
func BenchmarkTraitsOf(b *testing.B) {
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"
	b.ReportAllocs()
	for b.Loop() {
		if t := traitsOf(q); t.sessionBound || t.track != nil {
			b.Fatal("a plain SELECT has no traits")
		}
	}
}
