package pool

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/protocol"
)

// The console's SET key = value changes one setting of the configuration in force, by
// PgBouncer's key name, and applies the result as RELOAD does (Server.Reload): what
// Reload changes at once changes at once, what shapes server connections replaces the
// pools. A later RELOAD or SIGHUP reads the configuration file again and so undoes a
// SET, as in PgBouncer. docs/operations.md is the reference.

// setters are the settings SET can change, by key.
var setters = map[string]func(c *Config, v string) error{
	"pool_mode": func(c *Config, v string) (err error) {
		c.PoolMode, err = ParseMode(strings.ToLower(v))
		return err
	},
	"default_pool_size":         setInt(func(c *Config) *int { return &c.DefaultPoolSize }),
	"min_pool_size":             setInt(func(c *Config) *int { return &c.MinPoolSize }),
	"max_client_conn":           setInt(func(c *Config) *int { return &c.MaxClientConn }),
	"max_packet_size":           setInt(func(c *Config) *int { return &c.MaxPacketSize }),
	"max_prepared_statements":   setInt(func(c *Config) *int { return &c.MaxPreparedStatements }),
	"max_db_connections":        setInt(func(c *Config) *int { return &c.MaxDBConnections }),
	"max_user_connections":      setInt(func(c *Config) *int { return &c.MaxUserConnections }),
	"reserve_pool_size":         setInt(func(c *Config) *int { return &c.ReservePoolSize }),
	"reserve_pool_timeout":      setSeconds(func(c *Config) *time.Duration { return &c.ReservePoolTimeout }),
	"server_idle_timeout":       setSeconds(func(c *Config) *time.Duration { return &c.ServerIdleTimeout }),
	"server_lifetime":           setSeconds(func(c *Config) *time.Duration { return &c.ServerLifetime }),
	"server_connect_timeout":    setSeconds(func(c *Config) *time.Duration { return &c.ServerConnectTimeout }),
	"server_login_retry":        setSeconds(func(c *Config) *time.Duration { return &c.ServerLoginRetry }),
	"server_check_delay":        setSeconds(func(c *Config) *time.Duration { return &c.ServerCheckDelay }),
	"server_check_query":        setString(func(c *Config) *string { return &c.ServerCheckQuery }),
	"server_reset_query":        setString(func(c *Config) *string { return &c.ServerResetQuery }),
	"query_wait_timeout":        setSeconds(func(c *Config) *time.Duration { return &c.QueryWaitTimeout }),
	"query_timeout":             setSeconds(func(c *Config) *time.Duration { return &c.QueryTimeout }),
	"client_login_timeout":      setSeconds(func(c *Config) *time.Duration { return &c.ClientLoginTimeout }),
	"client_idle_timeout":       setSeconds(func(c *Config) *time.Duration { return &c.ClientIdleTimeout }),
	"idle_transaction_timeout":  setSeconds(func(c *Config) *time.Duration { return &c.IdleTransactionTimeout }),
	"transaction_timeout":       setSeconds(func(c *Config) *time.Duration { return &c.TransactionTimeout }),
	"shutdown_timeout":          setSeconds(func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	"slow_transaction":          setSeconds(func(c *Config) *time.Duration { return &c.SlowTransaction }),
	"log_connections":           setBool(func(c *Config) *bool { return &c.LogConnections }),
	"server_round_robin":        setBool(func(c *Config) *bool { return &c.ServerRoundRobin }),
	"admin_users":               setList(func(c *Config) *[]string { return &c.AdminUsers }),
	"stats_users":               setList(func(c *Config) *[]string { return &c.StatsUsers }),
	"ignore_startup_parameters": setList(func(c *Config) *[]string { return &c.IgnoreStartupParameters }),
	"track_extra_parameters":    setList(func(c *Config) *[]string { return &c.TrackExtraParameters }),
	"auth_type":                 setString(func(c *Config) *string { return &c.AuthType }),
	"auth_file":                 setString(func(c *Config) *string { return &c.AuthFile }),
	"auth_hba_file":             setString(func(c *Config) *string { return &c.AuthHBAFile }),
	"auth_user":                 setString(func(c *Config) *string { return &c.AuthUser }),
	"auth_query":                setString(func(c *Config) *string { return &c.AuthQuery }),
	"auth_dbname":               setString(func(c *Config) *string { return &c.AuthDBName }),
	"client_tls_sslmode":        setString(func(c *Config) *string { return &c.ClientTLSSSLMode }),
	"client_tls_cert_file":      setString(func(c *Config) *string { return &c.ClientTLSCertFile }),
	"client_tls_key_file":       setString(func(c *Config) *string { return &c.ClientTLSKeyFile }),
	"client_tls_ca_file":        setString(func(c *Config) *string { return &c.ClientTLSCAFile }),
	"client_tls_protocols":      setString(func(c *Config) *string { return &c.ClientTLSProtocols }),
	"client_tls_ciphers":        setString(func(c *Config) *string { return &c.ClientTLSCiphers }),
	"server_tls_sslmode":        setString(func(c *Config) *string { return &c.ServerTLSSSLMode }),
	"server_tls_ca_file":        setString(func(c *Config) *string { return &c.ServerTLSCAFile }),
	"server_tls_cert_file":      setString(func(c *Config) *string { return &c.ServerTLSCertFile }),
	"server_tls_key_file":       setString(func(c *Config) *string { return &c.ServerTLSKeyFile }),
	"balance":                   setString(func(c *Config) *string { return &c.Balance }),
	"consistency":               setString(func(c *Config) *string { return &c.Consistency }),
	"rw_wait":                   setSeconds(func(c *Config) *time.Duration { return &c.RWWait }),
	"max_replica_lag":           setSeconds(func(c *Config) *time.Duration { return &c.MaxReplicaLag }),
	"replica_check_interval":    setSeconds(func(c *Config) *time.Duration { return &c.ReplicaCheckInterval }),
	"replica_ban_time":          setSeconds(func(c *Config) *time.Duration { return &c.ReplicaBanTime }),
	"tcp_keepcnt":               setInt(func(c *Config) *int { return &c.TCPKeepCnt }),
	"tcp_keepidle":              setSeconds(func(c *Config) *time.Duration { return &c.TCPKeepIdle }),
	"tcp_keepintvl":             setSeconds(func(c *Config) *time.Duration { return &c.TCPKeepIntvl }),
	"tcp_user_timeout":          setSeconds(func(c *Config) *time.Duration { return &c.TCPUserTimeout }),
	"tcp_keepalive": func(c *Config, v string) error {
		on, err := admin.ParseBool(v)
		c.TCPKeepaliveOff = !on
		return err
	},
	"max_replica_lag_bytes": func(c *Config, v string) error {
		n, err := admin.ParseInt(v)
		c.MaxReplicaLagBytes = int64(n)
		return err
	},
}

// setFromConsole is the console's SET: the configuration in force with key set to
// value, applied by reload.
func (s *Server) setFromConsole(key, value string) *protocol.Error {
	set, ok := setters[key]
	if !ok {
		return admin.RefuseSetting(key)
	}
	// reloadMu is not held across both steps: a RELOAD in between wins, then this SET
	// applies on top of it.
	cfg := *s.conf()
	cfg.AdminUsers = slices.Clone(cfg.AdminUsers)
	cfg.StatsUsers = slices.Clone(cfg.StatsUsers)
	if err := set(&cfg, value); err != nil {
		return protocol.NewError(protocol.CodeInvalidParameterValue, fmt.Sprintf("invalid value for %s: %v", key, err))
	}
	if _, err := s.reload(cfg); err != nil {
		return protocol.NewError(protocol.CodeInvalidParameterValue,
			fmt.Sprintf("SET %s failed, the configuration in force is unchanged: %v", key, err))
	}
	return nil
}

func setInt(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) (err error) {
		*field(c), err = admin.ParseInt(v)
		return err
	}
}

func setSeconds(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) (err error) {
		*field(c), err = admin.ParseSeconds(v)
		return err
	}
}

func setBool(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) (err error) {
		*field(c), err = admin.ParseBool(v)
		return err
	}
}

func setString(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*field(c) = v
		return nil
	}
}

func setList(field func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*field(c) = admin.ParseList(v)
		return nil
	}
}
