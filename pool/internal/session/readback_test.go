package session_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/session"
)

func TestParseReadback(t *testing.T) {
	got, funcs, err := session.ParseReadback(`[[["work_mem", "4MB", false], ["work_mem", "4MB", true], ["myapp.x", null, false], ["timezone", "UTC", true]], {"f": [true, false, ["work_mem"]], "g": [false, false, []]}]`)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.True(t, got["work_mem"].Session)
	require.Equal(t, "4MB", *got["work_mem"].Value)
	require.Nil(t, got["myapp.x"].Value)
	require.Equal(t, "UTC", *got["TimeZone"].Value)
	require.Equal(t, map[string]session.Judgement{"f": {MayChange: true, Names: []string{"work_mem"}}, "g": {Names: []string{}}}, funcs)
	for _, bad := range []string{`[[["x"]], {}]`, `[[]]`, `{}`, `[[], {"f": [true]}]`} {
		_, _, err = session.ParseReadback(bad)
		require.Error(t, err, bad)
	}
}
