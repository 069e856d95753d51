package pool

import (
	"maps"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/router"
)

// Hot reload: Reload applies a new Config without dropping connected clients.
//
// Timeouts, limits, users, admin lists and routing settings take effect at once (they are
// read from the live Config). Settings that shape server connections (the primary, pool
// sizes and modes, server timeouts, databases, the auth file) replace the pools: new
// transactions use new pools, and the old ones close as their connections come back, so
// for a moment both may hold connections. A changed replica list or replica-monitor
// setting replaces the replica set. Listen and Logger cannot change live.

// Reload applies cfg. It returns an error, and changes nothing, when cfg is invalid.
// Settings that need a restart are logged and left as they are.
func (s *Server) Reload(cfg Config) error {
	_, err := s.reload(cfg)
	return err
}

// reloadFromSource is the console's RELOAD: it applies Config.LoadConfig's result, or
// the configuration in force when there is no LoadConfig.
func (s *Server) reloadFromSource() (fixed []string, err error) {
	cfg := *s.conf()
	if load := cfg.LoadConfig; load != nil {
		if cfg, err = load(); err != nil {
			return nil, err
		}
		if cfg.LoadConfig == nil {
			cfg.LoadConfig = load
		}
	}
	return s.reload(cfg)
}

// reload applies cfg and returns the names of the settings it could not change.
func (s *Server) reload(cfg Config) ([]string, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.conf()
	if cfg.Logger == nil {
		cfg.Logger = old.Logger
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var fixed []string
	if c.Listen != old.Listen {
		fixed = append(fixed, "listen")
		c.Listen = old.Listen
	}
	if c.Logger != old.Logger {
		c.Logger = old.Logger
	}
	if c.PeerID != old.PeerID {
		// The cancel keys of connected clients carry the old id.
		fixed = append(fixed, "peer_id")
		c.PeerID = old.PeerID
	}
	if c.Observer != old.Observer {
		fixed = append(fixed, "observer")
		c.Observer = old.Observer
	}
	if c.MaxPacketSize != old.MaxPacketSize {
		// Each client's frame reader is sized at connect; new clients get the new limit.
		fixed = append(fixed, "max_packet_size (for clients already connected)")
	}
	var secrets map[string]string
	if c.AuthFile != "" {
		if secrets, err = readAuthFile(c.AuthFile); err != nil {
			return nil, err
		}
	}
	oldAuth := s.authn()
	auth, err := newAuthenticator(&c, oldAuth.Target(), secrets)
	if err != nil {
		return nil, err
	}
	auth.CarryOver(oldAuth)
	passwords := serverPasswords(auth, secrets, c.Users)
	tlsChanged := c.ClientTLSSSLMode != old.ClientTLSSSLMode || c.ClientTLSCertFile != old.ClientTLSCertFile ||
		c.ClientTLSKeyFile != old.ClientTLSKeyFile || c.ClientTLSCAFile != old.ClientTLSCAFile ||
		c.ClientTLSProtocols != old.ClientTLSProtocols || c.ClientTLSCiphers != old.ClientTLSCiphers
	tc, err := loadClientTLS(&c)
	if err != nil {
		return nil, err
	}
	primaryCfg, replicaCfgs, err := parseBackends(&c)
	if err != nil {
		return nil, err
	}

	poolsChanged := c.Primary != old.Primary || c.DefaultPoolSize != old.DefaultPoolSize ||
		c.MinPoolSize != old.MinPoolSize || c.PoolMode != old.PoolMode ||
		c.ServerIdleTimeout != old.ServerIdleTimeout || c.ServerLifetime != old.ServerLifetime ||
		c.ServerConnectTimeout != old.ServerConnectTimeout || c.MaxPreparedStatements != old.MaxPreparedStatements ||
		!reflect.DeepEqual(c.Databases, old.Databases) || c.AuthFile != old.AuthFile ||
		!reflect.DeepEqual(c.Users, old.Users) || c.ServerTLSSSLMode != old.ServerTLSSSLMode ||
		c.ServerTLSCAFile != old.ServerTLSCAFile || c.ServerTLSCertFile != old.ServerTLSCertFile ||
		c.ServerTLSKeyFile != old.ServerTLSKeyFile || c.limitsChanged(old)
	replicasChanged := !slices.Equal(c.Replicas, old.Replicas) || c.Primary != old.Primary ||
		c.ReplicaCheckInterval != old.ReplicaCheckInterval || c.MaxReplicaLagBytes != old.MaxReplicaLagBytes ||
		c.MaxReplicaLag != old.MaxReplicaLag || c.ReplicaBanTime != old.ReplicaBanTime || c.Balance != old.Balance

	var newRS *router.ReplicaSet
	if replicasChanged && len(c.Replicas) > 0 {
		if newRS, err = s.newReplicaSet(&c); err != nil {
			return nil, err
		}
	}

	s.mu.Lock()
	if !maps.Equal(passwords, s.passwords) {
		poolsChanged = true
		s.passwords = passwords
	}
	retire := s.retirePoolsLocked(func(key poolKey) bool {
		return poolsChanged || replicasChanged && key.backend != backendPrimary
	})
	if poolsChanged {
		s.primaryCfg = primaryCfg
	}
	var oldRS *router.ReplicaSet
	if replicasChanged {
		s.replicaCfgs = replicaCfgs
		oldRS = s.rs()
		s.replicaSet.Store(newRS)
	}
	s.live.Store(&c)
	s.auth.Store(auth)
	s.clientTLS.Store(tc) // certificates are read again at every reload
	if poolsChanged {
		s.primaryGen.Add(1)
	}
	serving := s.serving.Load()
	addrs := make([]net.Addr, 0, len(s.listeners))
	for ln := range s.listeners {
		addrs = append(addrs, ln.Addr())
	}
	s.mu.Unlock()
	if !oldAuth.TrustConfigured() {
		for _, a := range addrs {
			s.warnTrust(a) // the reload made trust reachable from other hosts
		}
	}

	if newRS != nil && serving {
		newRS.Start()
	}
	if oldRS != nil {
		oldRS.Close()
	}
	s.closeRetired(retire)
	if c.ClientIdleTimeout > 0 && c.ClientIdleTimeout != old.ClientIdleTimeout {
		s.rearmIdleClients()
	}
	// Function volatility may have changed with the schema: look it up again.
	s.volatile.clear()
	s.funcSettings.Clear()
	for _, f := range fixed {
		s.log.Warn("setting cannot change without a restart: left as it was", "setting", f)
	}
	s.log.Info("configuration reloaded", "pools_replaced", poolsChanged, "replicas_replaced", replicasChanged, "client_tls_changed", tlsChanged,
		"pool_mode", string(c.PoolMode), "default_pool_size", c.DefaultPoolSize, "replicas", len(c.Replicas))
	return fixed, nil
}

// statsPeriod is how often the avg_* columns of SHOW STATS are recomputed, as
// PgBouncer's stats_period.
const statsPeriod = 60 * time.Second

// statsSampler recomputes the averages every statsPeriod until the server stops.
func (s *Server) statsSampler() {
	prev := s.totalsByDatabase()
	tick := time.NewTicker(statsPeriod)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		cur := s.totalsByDatabase()
		avgs := make(map[string]admin.Averages, len(cur))
		for db, t := range cur {
			avgs[db] = admin.AveragesOf(t.Minus(prev[db]), statsPeriod)
		}
		s.averages.Store(&avgs)
		prev = cur
	}
}

func parseConnString(u string) (*pgconn.Config, error) { return pgconn.ParseConfig(u) }

// configEntry is one row of SHOW CONFIG.
type configEntry struct {
	key, value, def string
	changeable      bool
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// configEntries are SHOW CONFIG's rows, with PgBouncer's key names where PgBouncer has
// the setting and durations in seconds.
func (s *Server) configEntries() []admin.ConfigEntry {
	c := s.conf()
	n := strconv.Itoa
	entries := []configEntry{
		{"listen_addr", c.Listen, DefaultListen, false},
		{"pool_mode", string(c.PoolMode), string(ModeTransaction), true},
		{"default_pool_size", n(c.DefaultPoolSize), n(DefaultPoolSizeValue), true},
		{"min_pool_size", n(c.MinPoolSize), "0", true},
		{"max_client_conn", n(c.MaxClientConn), n(DefaultMaxClientConn), true},
		{"max_user_connections", n(c.MaxUserConnections), "0", true},
		{"max_db_connections", n(c.MaxDBConnections), "0", true},
		{"server_idle_timeout", seconds(c.ServerIdleTimeout), seconds(DefaultServerIdleTimeout), true},
		{"server_lifetime", seconds(c.ServerLifetime), seconds(DefaultServerLifetime), true},
		{"server_connect_timeout", seconds(c.ServerConnectTimeout), seconds(DefaultServerConnectTimeout), true},
		{"server_reset_query", c.ServerResetQuery, DefaultServerResetQuery, true},
		{"query_wait_timeout", seconds(c.QueryWaitTimeout), seconds(DefaultQueryWaitTimeout), true},
		{"query_timeout", seconds(c.QueryTimeout), "0", true},
		{"client_login_timeout", seconds(c.ClientLoginTimeout), seconds(DefaultClientLoginTimeout), true},
		{"client_idle_timeout", seconds(c.ClientIdleTimeout), "0", true},
		{"idle_transaction_timeout", seconds(c.IdleTransactionTimeout), "0", true},
		{"shutdown_timeout", seconds(c.ShutdownTimeout), seconds(DefaultShutdownTimeout), true},
		{"max_packet_size", n(c.MaxPacketSize), n(DefaultMaxPacketSize), true},
		{"max_prepared_statements", n(c.MaxPreparedStatements), n(DefaultMaxPreparedStatements), true},
		{"auth_type", c.AuthType, "", true},
		{"auth_file", c.AuthFile, "", true},
		{"auth_hba_file", c.AuthHBAFile, "", true},
		{"auth_user", c.AuthUser, "", true},
		{"auth_query", c.AuthQuery, DefaultAuthQuery, true},
		{"auth_dbname", c.AuthDBName, "", true},
		{"client_tls_sslmode", c.ClientTLSSSLMode, "disable", true},
		{"client_tls_protocols", c.ClientTLSProtocols, "secure", true},
		{"server_tls_sslmode", c.ServerTLSSSLMode, "", true},
		{"admin_users", strings.Join(c.AdminUsers, ","), "", true},
		{"stats_users", strings.Join(c.StatsUsers, ","), "", true},
		{"log_connections", boolString(c.LogConnections), "0", true},
		{"slow_transaction", seconds(c.SlowTransaction), "0", true},
		{"replicas", strconv.Itoa(len(c.Replicas)), "0", true},
		{"balance", c.Balance, "round_robin", true},
		{"max_replica_lag_bytes", strconv.FormatInt(c.MaxReplicaLagBytes, 10), "0", true},
		{"max_replica_lag", seconds(c.MaxReplicaLag), "0", true},
		{"replica_check_interval", seconds(c.ReplicaCheckInterval), "1", true},
		{"replica_ban_time", seconds(c.ReplicaBanTime), "5", true},
		{"consistency", c.Consistency, "user", true},
		{"rw_wait", seconds(c.RWWait), "0.05", true},
	}
	entries = append(entries, c.limitConfigEntries()...)
	out := make([]admin.ConfigEntry, len(entries))
	for i, e := range entries {
		out[i] = admin.ConfigEntry{Key: e.key, Value: e.value, Default: e.def, Changeable: e.changeable}
	}
	return out
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
