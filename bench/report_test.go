package main

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAbbreviate(t *testing.T) {
	short := "one\ntwo"
	require.Equal(t, short, abbreviate(short, 100))

	long := strings.Repeat("first error\n", 10) + strings.Repeat("x\n", 100) + strings.Repeat("last line\n", 10)
	got := abbreviate(long, 200)
	require.True(t, strings.HasPrefix(got, "first error\n"), got)
	require.True(t, strings.HasSuffix(got, "last line\n"), got)
	require.Contains(t, got, "bytes cut")
	require.Less(t, len(got), 250)
}

func TestMedian(t *testing.T) {
	require.True(t, math.IsNaN(median(nil)))
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
}
