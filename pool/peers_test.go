package pool

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPeerNoticeRoundTrip(t *testing.T) {
	for _, f := range [][3]string{{"app", "api", "10.0.0.7"}, {"", "", ""}, {"db", "user", "::1"}} {
		b := appendPeerNotice(nil, f[0], f[1], f[2])
		require.Equal(t, byte('W'), b[0])
		require.Equal(t, len(b)-1, int(binary.BigEndian.Uint32(b[1:5])))
		database, user, addr, ok := parsePeerNotice(b[5:])
		require.True(t, ok)
		require.Equal(t, f, [3]string{database, user, addr})
	}
	for _, bad := range []string{"", "app\x00api\x00", "app\x00api\x00addr", "a\x00b\x00c\x00d"} {
		_, _, _, ok := parsePeerNotice([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
}

// FuzzPeerNotice: a notice body from the network never panics, and one that parses is
// the encoding of what it parsed to.
func FuzzPeerNotice(f *testing.F) {
	f.Add([]byte("app\x00api\x0010.0.0.7\x00"))
	f.Add([]byte("\x00\x00\x00"))
	f.Add([]byte("a\x00b"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		database, user, addr, ok := parsePeerNotice(body)
		if !ok {
			return
		}
		require.Equal(t, body, appendPeerNotice(nil, database, user, addr)[5:])
	})
}

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
