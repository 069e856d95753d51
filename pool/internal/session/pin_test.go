package session_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
)

func TestPinReasons(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  []string
		want []string
		ok   bool
	}{
		{"nothing", []string{"0", "0", "0"}, nil, true},
		{"lock", []string{"2", "0", "0"}, []string{"advisory_lock"}, true},
		{"cursor", []string{"0", "1", "0"}, []string{"with_hold_cursor"}, true},
		{"temp", []string{"0", "0", "5"}, []string{"temp_table"}, true},
		{"all", []string{"1", "1", "1"}, []string{"advisory_lock", "with_hold_cursor", "temp_table"}, true},
		{"lock and temp", []string{"1", "0", "3"}, []string{"advisory_lock", "temp_table"}, true},
		{"short", []string{"0", "0"}, nil, false},
		{"not a number", []string{"0", "x", "0"}, nil, false},
		{"null", []string{"0", "", "0"}, nil, false},
		{"negative", []string{"-1", "0", "0"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := session.PinReasons(tc.row)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

// FuzzPinReasons: any row a server sends reads as reasons or as not ok, never a panic, and
// reasons come only from counts that are positive numbers.
func FuzzPinReasons(f *testing.F) {
	f.Add("0", "0", "0")
	f.Add("1", "0", "12")
	f.Add("-1", "x", "")
	f.Add("99999999999999999999", "0", "0")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		reasons, ok := session.PinReasons([]string{a, b, c})
		if !ok {
			require.Nil(t, reasons)
			return
		}
		require.LessOrEqual(t, len(reasons), 3)
	})
}
