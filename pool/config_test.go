package pool_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

func TestNewValidatesConfig(t *testing.T) {
	const primary = "postgres://u@127.0.0.1:5432/db"
	for _, tc := range []struct {
		name string
		cfg  pool.Config
		want string
	}{
		{"no primary", pool.Config{}, "no primary"},
		{"bad primary", pool.Config{Primary: "postgres://u@host:notaport/db"}, "primary"},
		{"bad replica", pool.Config{Primary: primary, Replicas: []string{"postgres://u@host:notaport/db"}}, "replica 0"},
		{"bad mode", pool.Config{Primary: primary, PoolMode: "sometimes"}, "unknown pool mode"},
		{"min above max", pool.Config{Primary: primary, DefaultPoolSize: 2, MinPoolSize: 3}, "min_pool_size"},
		{"negative size", pool.Config{Primary: primary, DefaultPoolSize: -1}, "negative"},
		{"bad database mode", pool.Config{Primary: primary, Databases: map[string]pool.Database{"x": {PoolMode: "nope"}}}, `database "x"`},
		{"missing auth file", pool.Config{Primary: primary, AuthFile: "/nonexistent/userlist.txt"}, "auth_file"},
		{"peer id too large", pool.Config{Primary: primary, PeerID: pool.MaxPeerID + 1}, "peer_id"},
		{"peer id with too many clients", pool.Config{Primary: primary, PeerID: 1, MaxClientConn: 70000}, "max_client_conn"},
		{"bad peer id", pool.Config{Primary: primary, PeerID: 1, Peers: map[int]string{0: "127.0.0.1:1"}}, "peer id 0"},
		{"bad peer address", pool.Config{Primary: primary, PeerID: 1, Peers: map[int]string{2: "nowhere"}}, "peer 2"},
		{"bad route", pool.Config{Primary: primary, Databases: map[string]pool.Database{"x": {Route: "sometimes"}}}, `unknown route "sometimes"`},
		{"negative max_pinned", pool.Config{Primary: primary, MaxPinned: -1}, "max_pinned"},
		{"negative database max_pinned", pool.Config{Primary: primary, Databases: map[string]pool.Database{"x": {MaxPinned: -2}}}, `database "x": max_pinned`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := pool.New(pool.Config{Primary: primary})
	require.NoError(t, err)
	// A route is read in any case, as cmpool.route is.
	_, err = pool.New(pool.Config{Primary: primary, Databases: map[string]pool.Database{"x": {Route: "Replica"}}})
	require.NoError(t, err)
}

func TestParseMode(t *testing.T) {
	for _, m := range []string{"session", "transaction", "statement"} {
		got, err := pool.ParseMode(m)
		require.NoError(t, err)
		require.Equal(t, pool.Mode(m), got)
	}
	_, err := pool.ParseMode("Transaction")
	require.Error(t, err)
}

func TestPinningDefaults(t *testing.T) {
	off, on := false, true
	for _, tc := range []struct {
		name    string
		cfg     pool.Config
		db      string
		wantOn  bool
		wantMax int
	}{
		{"defaults: half of default_pool_size", pool.Config{}, "app", true, pool.DefaultPoolSizeValue / 2},
		{"at least one", pool.Config{DefaultPoolSize: 1}, "app", true, 1},
		{"half of the database's pool_size", pool.Config{Databases: map[string]pool.Database{"app": {PoolSize: 6}}}, "app", true, 3},
		{"global max_pinned", pool.Config{MaxPinned: 7}, "app", true, 7},
		{"database max_pinned wins", pool.Config{MaxPinned: 7, Databases: map[string]pool.Database{"app": {MaxPinned: 2}}}, "app", true, 2},
		{"off globally", pool.Config{PinSessionStateOff: true}, "app", false, pool.DefaultPoolSizeValue / 2},
		{"off for one database", pool.Config{Databases: map[string]pool.Database{"app": {PinSessionState: &off}}}, "app", false, pool.DefaultPoolSizeValue / 2},
		{"on for one database", pool.Config{PinSessionStateOff: true, Databases: map[string]pool.Database{"app": {PinSessionState: &on}}}, "app", true, pool.DefaultPoolSizeValue / 2},
		{"another database keeps the global setting", pool.Config{Databases: map[string]pool.Database{"app": {PinSessionState: &off}}}, "other", true, pool.DefaultPoolSizeValue / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotOn, gotMax := pool.Pinning(tc.cfg, tc.db)
			require.Equal(t, tc.wantOn, gotOn)
			require.Equal(t, tc.wantMax, gotMax)
		})
	}
}
