package pool_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

func TestNewValidatesLimits(t *testing.T) {
	const primary = "postgres://u@127.0.0.1:5432/db"
	for _, tc := range []struct {
		name string
		cfg  pool.Config
		want string
	}{
		{"negative max_db_connections", pool.Config{MaxDBConnections: -1}, "max_db_connections must not be negative"},
		{"negative max_user_connections", pool.Config{MaxUserConnections: -1}, "max_user_connections"},
		{"negative reserve", pool.Config{ReservePoolSize: -1}, "reserve_pool_size"},
		{"negative transaction_timeout", pool.Config{TransactionTimeout: -time.Second}, "transaction_timeout"},
		{"negative keepidle", pool.Config{TCPKeepIdle: -time.Second}, "tcp_keepidle"},
		{"negative database limit", pool.Config{Databases: map[string]pool.Database{"d": {MaxDBConnections: -2}}}, `database "d"`},
		{"bad user mode", pool.Config{Users: map[string]pool.User{"u": {PoolMode: "often"}}}, `user "u": pool: unknown pool mode`},
		{"negative user limit", pool.Config{Users: map[string]pool.User{"u": {MaxUserConnections: -1}}}, `user "u": max_user_connections`},
		{"bad ignored name", pool.Config{IgnoreStartupParameters: []string{"extra_float_digits", "a b"}}, `ignore_startup_parameters: "a b"`},
		{"bad tracked name", pool.Config{TrackExtraParameters: []string{"x;y"}}, "track_extra_parameters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Primary = primary
			_, err := pool.New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := pool.New(pool.Config{Primary: primary, MaxDBConnections: 5, MaxUserConnections: 3, ReservePoolSize: 2,
		ServerRoundRobin: true, ServerCheckQuery: "-", TransactionTimeout: time.Minute, TCPKeepaliveOff: true,
		IgnoreStartupParameters: []string{" extra_float_digits", "options"}, TrackExtraParameters: []string{"myapp.tenant"},
		Users:     map[string]pool.User{"u": {PoolMode: pool.ModeSession, MaxUserConnections: 1}},
		Databases: map[string]pool.Database{"d": {MinPoolSize: 1, ReservePool: 1, MaxDBConnections: 2, AuthUser: "a", TimeZone: "UTC"}}})
	require.NoError(t, err)
}
