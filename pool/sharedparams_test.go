package pool

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSharedParams(t *testing.T) {
	var p sharedParams
	a := p.settings(map[string]string{"application_name": "app", "client_encoding": "UTF8"})
	b := p.settings(map[string]string{"client_encoding": "UTF8", "application_name": "app"})
	require.Len(t, p.sets, 1, "the same parameters share one map")
	c := p.settings(map[string]string{"application_name": "app\x00client_encoding"})
	p.settings(map[string]string{})
	require.Len(t, p.sets, 3, "other parameters, and none, are sets of their own")

	require.True(t, a.Set("application_name", "changed"))
	require.Equal(t, "app", b.Value("application_name"), "a change is the client's own")
	require.Equal(t, "UTF8", b.Value("client_encoding"))
	require.Equal(t, "app\x00client_encoding", c.Value("application_name"))
	again := p.settings(map[string]string{"application_name": "app", "client_encoding": "UTF8"})
	require.Equal(t, "app", again.Value("application_name"), "the shared map was not written")

	for i := range maxSharedParams + 10 {
		p.settings(map[string]string{"application_name": fmt.Sprint("app-", i)})
	}
	require.Len(t, p.sets, maxSharedParams, "bounded")
}
