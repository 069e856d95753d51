package lease

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestTextCache: a repeated statement text is converted once; a text pushed out by
// textCacheSize others is converted again.
func TestTextCache(t *testing.T) {
	var tc TextCache
	q := []byte("SELECT 1")
	first := tc.Text(q)
	require.Equal(t, "SELECT 1", first)
	require.Same(t, unsafe.StringData(first), unsafe.StringData(tc.Text(q)), "a repeated text is not converted again")
	for i := range textCacheSize {
		tc.Text([]byte{'q', 'u', 'e', 'r', 'y', '0' + byte(i)})
	}
	again := tc.Text(q)
	require.Equal(t, "SELECT 1", again)
	require.NotSame(t, unsafe.StringData(first), unsafe.StringData(again), "the text was pushed out")
}
