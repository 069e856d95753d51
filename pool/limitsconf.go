package pool

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PgBouncer's defaults of its limit and check settings.
const (
	DefaultReservePoolTimeout = 5 * time.Second
	DefaultServerCheckDelay   = 30 * time.Second
	DefaultServerLoginRetry   = time.Second
)

// parameterName is what a run-time parameter's name looks like (a custom one has a dot).
var parameterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// checkLimits validates PgBouncer's limit, check and keepalive settings in c, and fills
// in their defaults.
func (c *Config) checkLimits() error {
	for _, v := range []struct {
		name string
		bad  bool
	}{
		{"max_db_connections", c.MaxDBConnections < 0},
		{"max_user_connections", c.MaxUserConnections < 0},
		{"reserve_pool_size", c.ReservePoolSize < 0},
		{"reserve_pool_timeout", c.ReservePoolTimeout < 0},
		{"server_check_delay", c.ServerCheckDelay < 0},
		{"server_login_retry", c.ServerLoginRetry < 0},
		{"transaction_timeout", c.TransactionTimeout < 0},
		{"tcp_keepidle", c.TCPKeepIdle < 0},
		{"tcp_keepintvl", c.TCPKeepIntvl < 0},
		{"tcp_keepcnt", c.TCPKeepCnt < 0},
		{"tcp_user_timeout", c.TCPUserTimeout < 0},
	} {
		if v.bad {
			return fmt.Errorf("pool: %s must not be negative", v.name)
		}
	}
	if c.ReservePoolTimeout == 0 {
		c.ReservePoolTimeout = DefaultReservePoolTimeout
	}
	if c.ServerLoginRetry == 0 {
		c.ServerLoginRetry = DefaultServerLoginRetry
	}
	if c.ServerCheckDelay == 0 {
		c.ServerCheckDelay = DefaultServerCheckDelay
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"ignore_startup_parameters", c.IgnoreStartupParameters}, {"track_extra_parameters", c.TrackExtraParameters}} {
		for _, n := range list.names {
			if !parameterName.MatchString(strings.TrimSpace(n)) {
				return fmt.Errorf("pool: %s: %q is not a parameter name", list.key, n)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		d := c.Databases[name]
		if d.MinPoolSize < 0 || d.ReservePool < 0 || d.MaxDBConnections < 0 {
			return fmt.Errorf("pool: database %q: min_pool_size, reserve_pool and max_db_connections must not be negative", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Users)) {
		u := c.Users[name]
		if u.PoolMode != "" {
			if _, err := ParseMode(string(u.PoolMode)); err != nil {
				return fmt.Errorf("pool: user %q: %w", name, err)
			}
		}
		if u.MaxUserConnections < 0 {
			return fmt.Errorf("pool: user %q: max_user_connections must not be negative", name)
		}
	}
	return nil
}

// limitsChanged reports whether a reload from old to c changes a setting that pools take
// when they are made: the limits, the reserve, the server checks, the login retry and
// the keepalive of server sockets. (Per-database and per-user ones change with
// Databases and Users.)
func (c *Config) limitsChanged(old *Config) bool {
	return c.MaxDBConnections != old.MaxDBConnections || c.MaxUserConnections != old.MaxUserConnections ||
		c.ReservePoolSize != old.ReservePoolSize || c.ReservePoolTimeout != old.ReservePoolTimeout ||
		c.ServerRoundRobin != old.ServerRoundRobin || c.ServerCheckQuery != old.ServerCheckQuery ||
		c.ServerCheckDelay != old.ServerCheckDelay || c.ServerLoginRetry != old.ServerLoginRetry ||
		c.keepalive() != old.keepalive() || c.QueryWaitTimeout != old.QueryWaitTimeout && (c.MaxDBConnections > 0 || c.MaxUserConnections > 0)
}

// limitConfigEntries are SHOW CONFIG's rows of the limit, check, keepalive and startup
// settings, with PgBouncer's key names and defaults.
func (c *Config) limitConfigEntries() []configEntry {
	n := strconv.Itoa
	return []configEntry{
		{"reserve_pool_size", n(c.ReservePoolSize), "0", true},
		{"reserve_pool_timeout", seconds(c.ReservePoolTimeout), seconds(DefaultReservePoolTimeout), true},
		{"server_round_robin", boolString(c.ServerRoundRobin), "0", true},
		{"server_check_query", c.ServerCheckQuery, "", true},
		{"server_check_delay", seconds(c.ServerCheckDelay), seconds(DefaultServerCheckDelay), true},
		{"server_login_retry", seconds(c.ServerLoginRetry), seconds(DefaultServerLoginRetry), true},
		{"transaction_timeout", seconds(c.TransactionTimeout), "0", true},
		{"tcp_keepalive", boolString(!c.TCPKeepaliveOff), "1", true},
		{"tcp_keepidle", seconds(c.TCPKeepIdle), "0", true},
		{"tcp_keepintvl", seconds(c.TCPKeepIntvl), "0", true},
		{"tcp_keepcnt", n(c.TCPKeepCnt), "0", true},
		{"tcp_user_timeout", n(int(c.TCPUserTimeout / time.Millisecond)), "0", true},
		{"ignore_startup_parameters", strings.Join(c.IgnoreStartupParameters, ","), "", true},
		{"track_extra_parameters", strings.Join(c.TrackExtraParameters, ","), "", true},
	}
}
