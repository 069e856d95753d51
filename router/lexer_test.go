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
