package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/admin"
)

func TestParseValues(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": 0, "2": 2 * time.Second, "0.5": 500 * time.Millisecond, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond} {
		d, err := admin.ParseSeconds(v)
		require.NoError(t, err, v)
		require.Equal(t, want, d, v)
	}
	for _, v := range []string{"", "-1", "soon", "-2s", "1 s"} {
		_, err := admin.ParseSeconds(v)
		require.Error(t, err, v)
	}
	for v, want := range map[string]bool{"1": true, "on": true, "TRUE": true, "yes": true, "0": false, "off": false, "false": false, "No": false} {
		b, err := admin.ParseBool(v)
		require.NoError(t, err, v)
		require.Equal(t, want, b, v)
	}
	_, err := admin.ParseBool("maybe")
	require.Error(t, err)
	n, err := admin.ParseInt("20")
	require.NoError(t, err)
	require.Equal(t, 20, n)
	for _, v := range []string{"-1", "2.5", "", "x"} {
		_, err := admin.ParseInt(v)
		require.Error(t, err, v)
	}
	require.Equal(t, []string{"a", "b"}, admin.ParseList(" a, ,b ,"))
	require.Nil(t, admin.ParseList(""))
}

// FuzzConsoleRun runs arbitrary query strings through the console: it answers each with
// replies that decode, and never panics.
func FuzzConsoleRun(f *testing.F) {
	for _, seed := range []string{
		"SHOW POOLS", "SET default_pool_size = 5", "set x to 'a''b'; RELOAD", `SET "k" = "v"`, "SET k = 'unclosed",
		"KILL_CLIENT c1f", "KILL_CLIENT 18446744073709551616", "SHUTDOWN WAIT_FOR_CLIENTS", "SHOW SOCKETS; SHOW MEM",
		";;", "SET", "SET k", "SET k =", "SHOW client_encoding", "'", `"`, "SUSPEND",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		c := &fakeController{snap: handMade(), roles: map[string]admin.Role{"root": admin.RoleAdmin}}
		out, failed := newConsole(c, "root").Run(context.Background(), query)
		r := decode(t, out)
		if failed != nil {
			require.NotNil(t, r.err)
			require.Len(t, failed.Code, 5)
		}
	})
}

func TestRefuseSetting(t *testing.T) {
	for key, code := range map[string]string{
		"listen_addr": "55000", "so_reuseport": "55000", "peer_id": "55000", // cmpool's, fixed at start
		"logfile": "0A000", "dns_max_ttl": "0A000", "suspend_timeout": "0A000", // PgBouncer's only
		"no_such_setting": "42704",
	} {
		pe := admin.RefuseSetting(key)
		require.Equal(t, code, pe.Code, key)
		require.Contains(t, pe.Message, key)
	}
}
