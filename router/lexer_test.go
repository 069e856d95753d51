package router

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

func TestLowerWordKeywordsDoNotAllocate(t *testing.T) {
	for _, w := range []string{"SELECT", "Begin", "COMMIT", "Set", "TRANSACTION", "Update"} {
		if n := testing.AllocsPerRun(100, func() { sinkWord = lowerWord(w) }); n != 0 {
			t.Errorf("lowerWord(%q) allocates %v times", w, n)
		}
	}
}

var sinkWord string

// BenchmarkLowerWord folds the words judging pgbench's statements meets.
func BenchmarkLowerWord(b *testing.B) {
	words := []string{"SELECT", "abalance", "FROM", "UPDATE", "BEGIN", "END", "INSERT", "INTO"}
	for i := 0; i < b.N; i++ {
		sinkWord = lowerWord(words[i%len(words)])
	}
}
