package pool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWriteScopes(t *testing.T) {
	var w writeScopes
	t0 := time.Now()
	require.True(t, w.last("a").IsZero())
	w.note("a", t0)
	w.note("a", t0.Add(-time.Second)) // an older write does not move it back
	require.Equal(t, t0, w.last("a"))
	require.True(t, w.last("b").IsZero(), "scopes are apart")

	// Full: the scopes with no write for scopeForget go, the others stay.
	for i := range maxWriteScopes - 1 {
		w.note(string(rune('A'+i%26))+time.Duration(i).String(), t0.Add(-2*scopeForget))
	}
	w.note("new", t0.Add(time.Second))
	require.Equal(t, t0, w.last("a"))
	require.Equal(t, t0.Add(time.Second), w.last("new"))
	require.Len(t, w.at, 2)
}
