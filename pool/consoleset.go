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

// restartOnly are the settings cmpool has that need a restart, with the reason.
var restartOnly = map[string]string{
	"listen_addr":    "the listening socket is opened at start",
	"listen_port":    "the listening socket is opened at start",
	"listen":         "the listening socket is opened at start",
	"so_reuseport":   "the listening socket is opened at start",
	"peer_id":        "the cancel keys of connected clients carry it",
	"peer_listen":    "the listening socket is opened at start",
	"metrics_listen": "the metrics listener is opened at start",
	"primary":        "it is the [databases] connection, set in the configuration file; change it there and RELOAD",
	"replicas":       "it is a list, set in the configuration file; change it there and RELOAD",
	"log_level":      "the logger is made at start",
	"log_format":     "the logger is made at start",
}

// notInCmpool are PgBouncer settings cmpool does not have, with what takes their place.
var notInCmpool = map[string]string{
	"logfile":                     "cmpool logs to stderr",
	"pidfile":                     "cmpool runs in the foreground under a supervisor",
	"unix_socket_dir":             "cmpool listens on TCP only",
	"unix_socket_mode":            "cmpool listens on TCP only",
	"unix_socket_group":           "cmpool listens on TCP only",
	"user":                        "cmpool does not change its user",
	"syslog":                      "cmpool logs to stderr",
	"syslog_ident":                "cmpool logs to stderr",
	"syslog_facility":             "cmpool logs to stderr",
	"log_disconnections":          "log_connections logs both",
	"log_pooler_errors":           "pooler errors are always logged",
	"log_stats":                   "statistics are in SHOW STATS and the Prometheus metrics",
	"stats_period":                "the averages are over 60 s",
	"verbose":                     "use log_level",
	"dns_max_ttl":                 "cmpool keeps no DNS cache",
	"dns_nxdomain_ttl":            "cmpool keeps no DNS cache",
	"dns_zone_check_period":       "cmpool keeps no DNS cache",
	"resolv_conf":                 "cmpool keeps no DNS cache",
	"autodb_idle_timeout":         "cmpool has no automatic databases",
	"pool_idle_timeout":           "server_idle_timeout closes idle server connections",
	"suspend_timeout":             "cmpool has no SUSPEND",
	"pkt_buf":                     "cmpool sizes its buffers itself",
	"sbuf_loopcnt":                "cmpool has no event loop to share",
	"listen_backlog":              "cmpool uses the operating system's backlog",
	"server_fast_close":           "RECONNECT and PAUSE close servers as they come back",
	"server_reset_query_always":   "server_reset_query runs only in session mode",
	"disable_pqexec":              "cmpool takes multi-statement queries",
	"application_name_add_host":   "cmpool passes application_name as the client sets it",
	"conffile":                    "the configuration file is given at start",
	"service_name":                "cmpool has no Windows service",
	"job_name":                    "cmpool has no Windows service",
	"scram_iterations":            "cmpool does not store SCRAM secrets",
	"auth_ident_file":             "cmpool has no ident authentication",
	"auth_ldap_options":           "cmpool has no LDAP authentication",
	"query_wait_notify":           "cmpool does not notify waiting clients",
	"login_notify_message":        "cmpool sends no login notice",
	"client_tls13_ciphers":        "Go chooses the TLS 1.3 cipher suites",
	"client_tls_ecdhcurve":        "Go chooses the curves",
	"client_tls_dheparams":        "Go does not use DHE",
	"server_tls_protocols":        "Go chooses the protocol versions for server connections",
	"server_tls_ciphers":          "Go chooses the cipher suites for server connections",
	"server_tls13_ciphers":        "Go chooses the TLS 1.3 cipher suites",
	"cancel_wait_timeout":         "a cancel request is sent as soon as it arrives",
	"max_db_client_connections":   "max_client_conn bounds the clients",
	"max_user_client_connections": "max_client_conn bounds the clients",
}

// setFromConsole is the console's SET: the configuration in force with key set to
// value, applied by reload.
func (s *Server) setFromConsole(key, value string) *protocol.Error {
	set, ok := setters[key]
	if !ok {
		if why, ok := restartOnly[key]; ok {
			return protocol.NewError(protocol.CodeObjectNotInState,
				fmt.Sprintf("%s cannot be changed while cmpool runs: %s", key, why))
		}
		if why, ok := notInCmpool[key]; ok {
			return protocol.NewError(protocol.CodeFeatureNotSupported,
				fmt.Sprintf("cmpool has no setting %s: %s", key, why))
		}
		pe := protocol.NewError("42704", fmt.Sprintf("unrecognized configuration parameter %q", key))
		pe.Hint = "SHOW CONFIG lists the settings"
		return pe
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
