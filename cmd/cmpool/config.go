package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/cmlite/cmpool/pool"
)

// settings is everything the binary reads from flags, the environment and the TOML file.
// The TOML tags are the file's keys; the file is decoded straight into it.
type settings struct {
	// ConfigFile is the TOML file that was read. Empty means none.
	ConfigFile string `toml:"-"`
	// Quiet (PgBouncer's -q) logs to the logfile only, not to stderr.
	Quiet bool `toml:"-"`

	Listen          string     `toml:"listen"`
	Primary         string     `toml:"primary"`
	Replicas        []string   `toml:"replicas"`
	PoolMode        poolMode   `toml:"pool_mode"`
	DefaultPoolSize count      `toml:"default_pool_size"`
	MaxClientConn   count      `toml:"max_client_conn"`
	MetricsListen   string     `toml:"metrics_listen"`
	AuthFile        string     `toml:"auth_file"`
	LogLevel        slog.Level `toml:"log_level"`
	ReusePort       bool       `toml:"so_reuseport"`
	PeerID          count      `toml:"peer_id"`
	PeerListen      string     `toml:"peer_listen"`

	// File-only keys, named after PgBouncer's settings.
	MinPoolSize           count    `toml:"min_pool_size"`
	ServerIdleTimeout     duration `toml:"server_idle_timeout"`
	ServerLifetime        duration `toml:"server_lifetime"`
	ServerConnectTimeout  duration `toml:"server_connect_timeout"`
	QueryWaitTimeout      duration `toml:"query_wait_timeout"`
	QueryTimeout          duration `toml:"query_timeout"`
	ClientLoginTimeout    duration `toml:"client_login_timeout"`
	ServerResetQuery      string   `toml:"server_reset_query"`
	MaxPacketSize         count    `toml:"max_packet_size"`
	MaxPreparedStatements count    `toml:"max_prepared_statements"`

	// Operations.
	AdminUsers             stringList `toml:"admin_users"`
	StatsUsers             stringList `toml:"stats_users"`
	ClientIdleTimeout      duration   `toml:"client_idle_timeout"`
	IdleTransactionTimeout duration   `toml:"idle_transaction_timeout"`
	ShutdownTimeout        duration   `toml:"shutdown_timeout"`
	ParkIdleAfter          duration   `toml:"park_idle_after"`
	EventLoops             *int       `toml:"event_loops"`
	SlowTransaction        duration   `toml:"slow_transaction"`
	LogConnections         bool       `toml:"log_connections"`
	LogFormat              string     `toml:"log_format"`

	// Routing to replicas.
	Balance              string   `toml:"balance"`
	MaxReplicaLagBytes   count    `toml:"max_replica_lag_bytes"`
	MaxReplicaLag        duration `toml:"max_replica_lag"`
	ReplicaCheckInterval duration `toml:"replica_check_interval"`
	ReplicaBanTime       duration `toml:"replica_ban_time"`
	Consistency          string   `toml:"consistency"`
	RWWait               duration `toml:"rw_wait"`

	// Authentication and TLS (PgBouncer's names where it has the setting).
	AuthType            string   `toml:"auth_type"`
	AuthHBAFile         string   `toml:"auth_hba_file"`
	AuthUser            string   `toml:"auth_user"`
	AuthQuery           string   `toml:"auth_query"`
	AuthDBName          string   `toml:"auth_dbname"`
	AuthCacheTTL        duration `toml:"auth_cache_ttl"`
	AuthPlainWithoutTLS bool     `toml:"auth_plain_without_tls"`
	AuthFailureLimit    int      `toml:"auth_failure_limit"`
	ClientTLSSSLMode    string   `toml:"client_tls_sslmode"`
	ClientTLSCertFile   string   `toml:"client_tls_cert_file"`
	ClientTLSKeyFile    string   `toml:"client_tls_key_file"`
	ClientTLSCAFile     string   `toml:"client_tls_ca_file"`
	ClientTLSProtocols  string   `toml:"client_tls_protocols"`
	ClientTLSCiphers    string   `toml:"client_tls_ciphers"`
	ServerTLSSSLMode    string   `toml:"server_tls_sslmode"`
	ServerTLSCAFile     string   `toml:"server_tls_ca_file"`
	ServerTLSCertFile   string   `toml:"server_tls_cert_file"`
	ServerTLSKeyFile    string   `toml:"server_tls_key_file"`

	// PgBouncer's limits and server checks (pool.Config's fields of the same names).
	MaxDBConnections        count      `toml:"max_db_connections"`
	MaxUserConnections      count      `toml:"max_user_connections"`
	ReservePoolSize         count      `toml:"reserve_pool_size"`
	ReservePoolTimeout      duration   `toml:"reserve_pool_timeout"`
	ServerRoundRobin        bool       `toml:"server_round_robin"`
	ServerCheckQuery        string     `toml:"server_check_query"`
	ServerCheckDelay        duration   `toml:"server_check_delay"`
	ServerLoginRetry        duration   `toml:"server_login_retry"`
	TransactionTimeout      duration   `toml:"transaction_timeout"`
	TCPKeepalive            *bool      `toml:"tcp_keepalive"`
	TCPKeepIdle             duration   `toml:"tcp_keepidle"`
	TCPKeepIntvl            duration   `toml:"tcp_keepintvl"`
	TCPKeepCnt              count      `toml:"tcp_keepcnt"`
	TCPUserTimeout          duration   `toml:"tcp_user_timeout"`
	IgnoreStartupParameters stringList `toml:"ignore_startup_parameters"`
	TrackExtraParameters    stringList `toml:"track_extra_parameters"`

	// Session pinning in transaction and statement modes (docs/pooling.md).
	PinSessionState *bool `toml:"pin_session_state"`
	MaxPinned       count `toml:"max_pinned"`

	// Where and how the process runs, as PgBouncer's settings of the same names.
	// UnixSocketDir empty means no Unix socket; a pgbouncer.ini defaults it to /tmp.
	UnixSocketDir   string `toml:"unix_socket_dir"`
	UnixSocketMode  string `toml:"unix_socket_mode"`
	UnixSocketGroup string `toml:"unix_socket_group"`
	PidFile         string `toml:"pidfile"`
	LogFile         string `toml:"logfile"`
	// Workers is how many threads run Go code at once (GOMAXPROCS), as PgDog's workers;
	// 0 leaves the runtime's default, one per usable CPU.
	Workers int `toml:"workers"`

	Databases map[string]databaseSettings `toml:"databases"`
	// Peers is the [peers] section: peer id = "host:port".
	Peers map[string]string       `toml:"peers"`
	Users map[string]userSettings `toml:"users"`
}

// userSettings is a [users.NAME] section.
type userSettings struct {
	Password           string   `toml:"password"`
	AuthType           string   `toml:"auth_type"`
	PoolMode           poolMode `toml:"pool_mode"`
	MaxUserConnections count    `toml:"max_user_connections"`
}

// databaseSettings is a [databases.NAME] section.
type databaseSettings struct {
	URL        string   `toml:"url"`
	DBName     string   `toml:"dbname"`
	User       string   `toml:"user"`
	Password   string   `toml:"password"`
	PoolSize   count    `toml:"pool_size"`
	PoolMode   poolMode `toml:"pool_mode"`
	Route      string   `toml:"route"`
	AuthType   string   `toml:"auth_type"`
	AuthDBName string   `toml:"auth_dbname"`

	MinPoolSize      count  `toml:"min_pool_size"`
	ReservePool      count  `toml:"reserve_pool"`
	MaxDBConnections count  `toml:"max_db_connections"`
	AuthUser         string `toml:"auth_user"`
	ClientEncoding   string `toml:"client_encoding"`
	DateStyle        string `toml:"datestyle"`
	TimeZone         string `toml:"timezone"`

	PinSessionState *bool `toml:"pin_session_state"`
	MaxPinned       count `toml:"max_pinned"`
}

// option is a command-line flag and its environment twin.
type option struct {
	flag  string // flag name, without dashes
	env   string // environment variable
	arg   string // placeholder for the value in the usage text
	usage string
}

// options lists the flags in the order the usage text shows them.
var options = []option{
	{"config", "CMPOOL_CONFIG", "FILE", "configuration file: TOML, or a PgBouncer pgbouncer.ini"},
	{"listen", "CMPOOL_LISTEN", "ADDR", "address to accept clients on"},
	{"primary", "DATABASE_URL", "URL", "connection URL of the primary server"},
	{"replica", "REPLICA_URLS", "URL", "connection URL of a streaming replica; repeatable (env: comma-separated)"},
	{"pool-mode", "POOL_MODE", "MODE", "session, transaction or statement"},
	{"default-pool-size", "DEFAULT_POOL_SIZE", "N", "most server connections per database, user and backend"},
	{"max-client-conn", "MAX_CLIENT_CONN", "N", "most client connections at once"},
	{"metrics-listen", "CMPOOL_METRICS_LISTEN", "ADDR", "address for the HTTP endpoint (/healthz); empty means off"},
	{"auth-file", "CMPOOL_AUTH_FILE", "FILE", "PgBouncer-format userlist.txt"},
	{"auth-type", "CMPOOL_AUTH_TYPE", "METHOD", "scram-sha-256 (the default), md5, password, trust, reject or hba"},
	{"client-tls-sslmode", "CMPOOL_CLIENT_TLS_SSLMODE", "MODE", "TLS to clients: disable, allow, prefer, require, verify-ca or verify-full"},
	{"client-tls-cert-file", "CMPOOL_CLIENT_TLS_CERT_FILE", "FILE", "certificate (PEM) presented to clients"},
	{"client-tls-key-file", "CMPOOL_CLIENT_TLS_KEY_FILE", "FILE", "key (PEM) of the client TLS certificate"},
	{"server-tls-sslmode", "CMPOOL_SERVER_TLS_SSLMODE", "MODE", "TLS to servers: disable, allow, prefer, require, verify-ca or verify-full"},
	{"log-level", "CMPOOL_LOG_LEVEL", "LEVEL", "debug, info, warn or error"},
	{"reuse-port", "CMPOOL_REUSE_PORT", "", "listen with SO_REUSEPORT, so that several cmpool processes share the address"},
	{"peer-id", "CMPOOL_PEER_ID", "N", "this instance's id in cancel keys, for forwarding cancels between peers ([peers])"},
	{"peer-listen", "CMPOOL_PEER_LISTEN", "ADDR", "a second address of this instance alone, where peers forward cancel requests; empty means none"},
}

// defaultSettings returns the settings used when nothing else is given.
func defaultSettings() settings {
	return settings{
		Listen:          pool.DefaultListen,
		PoolMode:        poolMode(pool.ModeTransaction),
		DefaultPoolSize: pool.DefaultPoolSizeValue,
		MaxClientConn:   pool.DefaultMaxClientConn,
		LogLevel:        slog.LevelInfo,
	}
}

// newFlagSet returns a flag set whose flags write into s. Each flag's default is the value s
// holds now, so parsing only changes what the arguments name.
func newFlagSet(s *settings) *flag.FlagSet {
	fs := flag.NewFlagSet("cmpool", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage itself
	usage := make(map[string]string, len(options))
	for _, o := range options {
		usage[o.flag] = o.usage
	}
	fs.StringVar(&s.ConfigFile, "config", s.ConfigFile, usage["config"])
	fs.StringVar(&s.Listen, "listen", s.Listen, usage["listen"])
	fs.StringVar(&s.Primary, "primary", s.Primary, usage["primary"])
	fs.Var(&urlList{urls: &s.Replicas}, "replica", usage["replica"])
	fs.Var(&s.PoolMode, "pool-mode", usage["pool-mode"])
	fs.Var(&s.DefaultPoolSize, "default-pool-size", usage["default-pool-size"])
	fs.Var(&s.MaxClientConn, "max-client-conn", usage["max-client-conn"])
	fs.StringVar(&s.MetricsListen, "metrics-listen", s.MetricsListen, usage["metrics-listen"])
	fs.StringVar(&s.AuthFile, "auth-file", s.AuthFile, usage["auth-file"])
	fs.StringVar(&s.AuthType, "auth-type", s.AuthType, usage["auth-type"])
	fs.StringVar(&s.ClientTLSSSLMode, "client-tls-sslmode", s.ClientTLSSSLMode, usage["client-tls-sslmode"])
	fs.StringVar(&s.ClientTLSCertFile, "client-tls-cert-file", s.ClientTLSCertFile, usage["client-tls-cert-file"])
	fs.StringVar(&s.ClientTLSKeyFile, "client-tls-key-file", s.ClientTLSKeyFile, usage["client-tls-key-file"])
	fs.StringVar(&s.ServerTLSSSLMode, "server-tls-sslmode", s.ServerTLSSSLMode, usage["server-tls-sslmode"])
	fs.TextVar(&s.LogLevel, "log-level", s.LogLevel, usage["log-level"])
	fs.BoolVar(&s.ReusePort, "reuse-port", s.ReusePort, usage["reuse-port"])
	fs.Var(&s.PeerID, "peer-id", usage["peer-id"])
	fs.StringVar(&s.PeerListen, "peer-listen", s.PeerListen, usage["peer-listen"])
	return fs
}

// loadConfig builds the settings from the arguments after the subcommand, the environment
// (through getenv) and the TOML file they name. Flags win over the environment, the
// environment over the file, and the file over the defaults. A -h or --help argument
// returns flag.ErrHelp.
func loadConfig(args []string, getenv func(string) string) (settings, error) {
	// A first pass validates the arguments and finds --config.
	args, verbose, quiet, err := pgbouncerFlags(args)
	if err != nil {
		return settings{}, err
	}
	probe := defaultSettings()
	fs := newFlagSet(&probe)
	if err := fs.Parse(args); err != nil {
		return settings{}, err
	}
	path := probe.ConfigFile
	// As with PgBouncer, the configuration file may be the last argument.
	if fs.NArg() == 1 && path == "" && isConfigFile(fs.Arg(0)) {
		path = fs.Arg(0)
		args = args[:len(args)-1]
	} else if fs.NArg() > 0 {
		return settings{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	s := defaultSettings()
	if path == "" {
		path = getenv("CMPOOL_CONFIG")
	}
	if path != "" {
		if err := loadFile(path, &s); err != nil {
			return settings{}, err
		}
	}
	if err := applyImageEnv(&s, getenv); err != nil {
		return settings{}, err
	}
	if err := applyEnv(&s, getenv); err != nil {
		return settings{}, err
	}
	if err := applyListenEnv(&s, getenv); err != nil {
		return settings{}, err
	}
	if err := newFlagSet(&s).Parse(args); err != nil {
		return settings{}, err // cannot happen: the first pass accepted args
	}
	if verbose {
		s.LogLevel = slog.LevelDebug
	}
	s.Quiet = quiet
	s.ConfigFile = path
	return s, nil
}

// applyEnv sets every option whose environment variable is set and not empty.
func applyEnv(s *settings, getenv func(string) string) error {
	fs := newFlagSet(s)
	for _, o := range options {
		v := getenv(o.env)
		if v == "" {
			continue
		}
		if o.flag == "replica" {
			// Comma-separated; each URL goes through the same check as --replica.
			for u := range strings.SplitSeq(v, ",") {
				if u = strings.TrimSpace(u); u == "" {
					continue
				}
				if err := fs.Set(o.flag, u); err != nil {
					return fmt.Errorf("invalid value in %s: %w", o.env, err)
				}
			}
			continue
		}
		if err := fs.Set(o.flag, v); err != nil {
			return fmt.Errorf("invalid value %q for %s: %w", v, o.env, err)
		}
	}
	return nil
}

// loadFile decodes the TOML file at path over s. Keys the file does not set keep their value.
func loadFile(path string, s *settings) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if looksLikeINI(path, data) {
		return loadINI(path, s)
	}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(s)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if keys := unknownKeys(md.Undecoded()); len(keys) > 0 {
		return fmt.Errorf("config file %s: unknown key %s", path, strings.Join(keys, ", "))
	}
	if err := s.checkDurations(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for id := range s.Peers {
		if n, err := strconv.Atoi(id); err != nil || n < 1 || n > pool.MaxPeerID {
			return fmt.Errorf("config file %s: [peers]: key %q is not a peer id (1 to %d)", path, id, pool.MaxPeerID)
		}
	}
	return nil
}

// unknownKeys returns the quoted undecoded keys, leaving out those inside an unknown
// table: [users.alice] with a password gives just "users.alice".
func unknownKeys(undecoded []toml.Key) []string {
	var keys []string
	seen := map[string]bool{}
	for _, k := range undecoded { // a table comes before its keys
		inUnknown := false
		for i := 1; i < len(k); i++ {
			if seen[k[:i].String()] {
				inUnknown = true
				break
			}
		}
		seen[k.String()] = true
		if !inUnknown {
			keys = append(keys, fmt.Sprintf("%q", k.String()))
		}
	}
	return keys
}

// eventLoops is pool.Config.EventLoops for event_loops: unset or 0 is none, a negative
// number one per CPU.
func (s *settings) eventLoops() int {
	if s.EventLoops == nil {
		return 0
	}
	return *s.EventLoops
}

// checkDurations applies PgBouncer's meaning of an explicit 0 where pool.Config can express
// it, and refuses it where it cannot, instead of silently using pool's default.
func (s *settings) checkDurations() error {
	// 0 disables these in PgBouncer; pool.Config disables them with a negative value.
	for _, d := range []*duration{&s.ServerIdleTimeout, &s.QueryWaitTimeout, &s.AuthCacheTTL, &s.ParkIdleAfter} {
		if d.set && d.d == 0 {
			d.d = -1
		}
	}
	for _, c := range []struct {
		key string
		d   duration
	}{
		{"client_idle_timeout", s.ClientIdleTimeout},
		{"idle_transaction_timeout", s.IdleTransactionTimeout},
		{"query_timeout", s.QueryTimeout},
		{"slow_transaction", s.SlowTransaction},
	} {
		if c.d.d < 0 {
			return fmt.Errorf("%s must not be negative (0 disables it), got %s", c.key, c.d.d)
		}
	}
	if s.Workers < 0 {
		return fmt.Errorf("workers must not be negative (0 is one per CPU), got %d", s.Workers)
	}
	switch s.LogFormat {
	case "", "text", "json":
	default:
		return fmt.Errorf("log_format must be text or json, got %q", s.LogFormat)
	}
	if s.ServerLifetime.set && s.ServerLifetime.d == 0 {
		return errors.New(`server_lifetime = 0 (use each server connection once) is not supported; ` +
			`use a positive duration, or a negative one to disable`)
	}
	for _, c := range []struct {
		key string
		d   duration
	}{
		{"server_connect_timeout", s.ServerConnectTimeout},
		{"client_login_timeout", s.ClientLoginTimeout},
		{"shutdown_timeout", s.ShutdownTimeout},
	} {
		if c.d.set && c.d.d <= 0 {
			return fmt.Errorf("%s must be positive, got %s", c.key, c.d.d)
		}
	}
	return nil
}

// poolConfig returns the pool.Config these settings describe.
func (s *settings) poolConfig(logger *slog.Logger) pool.Config {
	cfg := pool.Config{
		Listen:                 s.Listen,
		Primary:                s.Primary,
		Replicas:               s.Replicas,
		PoolMode:               pool.Mode(s.PoolMode),
		DefaultPoolSize:        int(s.DefaultPoolSize),
		MinPoolSize:            int(s.MinPoolSize),
		MaxClientConn:          int(s.MaxClientConn),
		ServerIdleTimeout:      s.ServerIdleTimeout.d,
		ServerLifetime:         s.ServerLifetime.d,
		ServerConnectTimeout:   s.ServerConnectTimeout.d,
		QueryWaitTimeout:       s.QueryWaitTimeout.d,
		ClientLoginTimeout:     s.ClientLoginTimeout.d,
		ServerResetQuery:       s.ServerResetQuery,
		MaxPacketSize:          int(s.MaxPacketSize),
		MaxPreparedStatements:  int(s.MaxPreparedStatements),
		Balance:                s.Balance,
		MaxReplicaLagBytes:     int64(s.MaxReplicaLagBytes),
		MaxReplicaLag:          s.MaxReplicaLag.d,
		ReplicaCheckInterval:   s.ReplicaCheckInterval.d,
		ReplicaBanTime:         s.ReplicaBanTime.d,
		Consistency:            s.Consistency,
		RWWait:                 s.RWWait.d,
		AuthFile:               s.AuthFile,
		AdminUsers:             s.AdminUsers,
		StatsUsers:             s.StatsUsers,
		ClientIdleTimeout:      s.ClientIdleTimeout.d,
		ParkIdleAfter:          s.ParkIdleAfter.d,
		EventLoops:             s.eventLoops(),
		IdleTransactionTimeout: s.IdleTransactionTimeout.d,
		QueryTimeout:           s.QueryTimeout.d,
		ReusePort:              s.ReusePort,
		PeerID:                 int(s.PeerID),
		ShutdownTimeout:        s.ShutdownTimeout.d,
		SlowTransaction:        s.SlowTransaction.d,
		LogConnections:         s.LogConnections,
		AuthType:               s.AuthType,
		AuthHBAFile:            s.AuthHBAFile,
		AuthUser:               s.AuthUser,
		AuthQuery:              s.AuthQuery,
		AuthDBName:             s.AuthDBName,
		AuthCacheTTL:           s.AuthCacheTTL.d,
		AuthPlainWithoutTLS:    s.AuthPlainWithoutTLS,
		AuthFailureLimit:       s.AuthFailureLimit,
		ClientTLSSSLMode:       s.ClientTLSSSLMode,
		ClientTLSCertFile:      s.ClientTLSCertFile,
		ClientTLSKeyFile:       s.ClientTLSKeyFile,
		ClientTLSCAFile:        s.ClientTLSCAFile,
		ClientTLSProtocols:     s.ClientTLSProtocols,
		ClientTLSCiphers:       s.ClientTLSCiphers,
		ServerTLSSSLMode:       s.ServerTLSSSLMode,
		ServerTLSCAFile:        s.ServerTLSCAFile,
		ServerTLSCertFile:      s.ServerTLSCertFile,
		ServerTLSKeyFile:       s.ServerTLSKeyFile,
		Logger:                 logger,

		MaxDBConnections:        int(s.MaxDBConnections),
		MaxUserConnections:      int(s.MaxUserConnections),
		ReservePoolSize:         int(s.ReservePoolSize),
		ReservePoolTimeout:      s.ReservePoolTimeout.d,
		ServerRoundRobin:        s.ServerRoundRobin,
		ServerCheckQuery:        s.ServerCheckQuery,
		ServerCheckDelay:        s.ServerCheckDelay.d,
		ServerLoginRetry:        s.ServerLoginRetry.d,
		TransactionTimeout:      s.TransactionTimeout.d,
		TCPKeepaliveOff:         s.TCPKeepalive != nil && !*s.TCPKeepalive,
		TCPKeepIdle:             s.TCPKeepIdle.d,
		TCPKeepIntvl:            s.TCPKeepIntvl.d,
		TCPKeepCnt:              int(s.TCPKeepCnt),
		TCPUserTimeout:          s.TCPUserTimeout.d,
		IgnoreStartupParameters: s.IgnoreStartupParameters,
		TrackExtraParameters:    s.TrackExtraParameters,
		PinSessionStateOff:      s.PinSessionState != nil && !*s.PinSessionState,
		MaxPinned:               int(s.MaxPinned),
	}
	if len(s.Peers) > 0 {
		cfg.Peers = make(map[int]string, len(s.Peers))
		for id, addr := range s.Peers {
			n, _ := strconv.Atoi(id) // checked by checkPeers
			cfg.Peers[n] = addr
		}
	}
	if len(s.Users) > 0 {
		cfg.Users = make(map[string]pool.User, len(s.Users))
		for name, u := range s.Users {
			cfg.Users[name] = pool.User{Password: u.Password, AuthType: u.AuthType,
				PoolMode: pool.Mode(u.PoolMode), MaxUserConnections: int(u.MaxUserConnections)}
		}
	}
	if len(s.Databases) > 0 {
		cfg.Databases = make(map[string]pool.Database, len(s.Databases))
		for name, d := range s.Databases {
			cfg.Databases[name] = pool.Database{
				URL:        d.URL,
				DBName:     d.DBName,
				User:       d.User,
				Password:   d.Password,
				PoolSize:   int(d.PoolSize),
				PoolMode:   pool.Mode(d.PoolMode),
				Route:      d.Route,
				AuthType:   d.AuthType,
				AuthDBName: d.AuthDBName,

				MinPoolSize:      int(d.MinPoolSize),
				ReservePool:      int(d.ReservePool),
				MaxDBConnections: int(d.MaxDBConnections),
				AuthUser:         d.AuthUser,
				ClientEncoding:   d.ClientEncoding,
				DateStyle:        d.DateStyle,
				TimeZone:         d.TimeZone,
				PinSessionState:  d.PinSessionState,
				MaxPinned:        int(d.MaxPinned),
			}
		}
	}
	return cfg
}
