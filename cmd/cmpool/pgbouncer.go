package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file maps a pgbouncer.ini (read by ini.go) onto settings. Every key of PgBouncer
// 1.25 has an entry in pgbouncerKeys: it either works, with PgBouncer's meaning (status
// "works") or a documented difference ("works differently"), or it is refused at load
// with the reason and what to use instead ("refused"). docs/migrating-from-pgbouncer.md
// lists them; a test checks that the two agree.

// Key statuses.
const (
	keyWorks   = "works"
	keyDiffers = "works differently"
	keyRefused = "refused"
)

// PgBouncer's defaults that differ from cmpool's, which a pgbouncer.ini gets.
const (
	iniSocketDir   = "/tmp"
	iniDefaultMode = "session"
	iniMaxClients  = 100
)

// pgbKey is one PgBouncer setting.
type pgbKey struct {
	name   string
	status string
	// set applies the value; nil for a refused key.
	set func(s *settings, st *iniState, v string) error
	// accept is, for a refused key, the value that asks for what cmpool does anyway
	// (PgBouncer's default, usually): it loads. Empty means none does.
	accept string
	// why says, for a refused key, why and what to use instead; for a key that works
	// differently, how.
	why string
	// example is a value that exercises the key (for a refused key, one it refuses).
	example string
}

// iniState is what the [pgbouncer] section gives that settings hold only combined.
type iniState struct {
	listenAddr, listenPort string
	logConnections         *bool
	logDisconnections      *bool
}

// Setters for the common kinds of values.
func setString(f func(*settings) *string) func(*settings, *iniState, string) error {
	return func(s *settings, _ *iniState, v string) error { *f(s) = v; return nil }
}

func setCount(f func(*settings) *count) func(*settings, *iniState, string) error {
	return func(s *settings, _ *iniState, v string) error {
		c, err := iniCount(v)
		*f(s) = c
		return err
	}
}

func setTime(f func(*settings) *duration) func(*settings, *iniState, string) error {
	return func(s *settings, _ *iniState, v string) error {
		d, err := iniDuration(v)
		*f(s) = d
		return err
	}
}

func setBool(f func(*settings) *bool) func(*settings, *iniState, string) error {
	return func(s *settings, _ *iniState, v string) error {
		b, err := iniBool(v)
		*f(s) = b
		return err
	}
}

func setList(f func(*settings) *stringList) func(*settings, *iniState, string) error {
	return func(s *settings, _ *iniState, v string) error { *f(s) = iniList(v); return nil }
}

func works(name, example string, set func(*settings, *iniState, string) error) pgbKey {
	return pgbKey{name: name, status: keyWorks, set: set, example: example}
}

func differs(name, example, why string, set func(*settings, *iniState, string) error) pgbKey {
	return pgbKey{name: name, status: keyDiffers, set: set, why: why, example: example}
}

func refused(name, accept, example, why string) pgbKey {
	return pgbKey{name: name, status: keyRefused, accept: accept, why: why, example: example}
}

// pgbouncerKeys are the keys of PgBouncer 1.25's [pgbouncer] section.
var pgbouncerKeys = []pgbKey{
	// Generic settings.
	works("logfile", "/tmp/cmpool-test.log", setString(func(s *settings) *string { return &s.LogFile })),
	works("pidfile", "/tmp/cmpool-test.pid", setString(func(s *settings) *string { return &s.PidFile })),
	works("listen_addr", "127.0.0.1", func(_ *settings, st *iniState, v string) error { st.listenAddr = v; return nil }),
	works("listen_port", "6433", func(_ *settings, st *iniState, v string) error {
		n, err := iniInt(v)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("want a port number, got %q", v)
		}
		st.listenPort = strconv.Itoa(int(n))
		return nil
	}),
	works("unix_socket_dir", "/tmp", setString(func(s *settings) *string { return &s.UnixSocketDir })),
	works("unix_socket_mode", "0700", func(s *settings, _ *iniState, v string) error {
		n, err := iniInt(v)
		if err != nil || n < 0 || n > 0o777 {
			return fmt.Errorf("want a file mode such as 0777, got %q", v)
		}
		s.UnixSocketMode = "0" + strconv.FormatInt(n, 8)
		return nil
	}),
	works("unix_socket_group", "", setString(func(s *settings) *string { return &s.UnixSocketGroup })),
	refused("user", "", "postgres", "cmpool does not switch users: start it as that user (the container's USER, systemd's User=)"),
	works("pool_mode", "statement", func(s *settings, _ *iniState, v string) error { return s.PoolMode.Set(v) }),
	differs("max_client_conn", "50", "Same meaning; past it a client gets FATAL 53300. Without the key, a pgbouncer.ini gets PgBouncer's 100.",
		setCount(func(s *settings) *count { return &s.MaxClientConn })),
	works("default_pool_size", "5", setCount(func(s *settings) *count { return &s.DefaultPoolSize })),
	works("min_pool_size", "1", setCount(func(s *settings) *count { return &s.MinPoolSize })),
	works("reserve_pool_size", "2", setCount(func(s *settings) *count { return &s.ReservePoolSize })),
	works("reserve_pool_timeout", "3", setTime(func(s *settings) *duration { return &s.ReservePoolTimeout })),
	works("max_db_connections", "10", setCount(func(s *settings) *count { return &s.MaxDBConnections })),
	refused("max_db_client_connections", "0", "10", "cmpool limits clients only as a whole: use max_client_conn"),
	works("max_user_connections", "10", setCount(func(s *settings) *count { return &s.MaxUserConnections })),
	refused("max_user_client_connections", "0", "10", "cmpool limits clients only as a whole: use max_client_conn"),
	works("server_round_robin", "1", setBool(func(s *settings) *bool { return &s.ServerRoundRobin })),
	works("track_extra_parameters", "search_path", setList(func(s *settings) *stringList { return &s.TrackExtraParameters })),
	works("ignore_startup_parameters", "extra_float_digits", setList(func(s *settings) *stringList { return &s.IgnoreStartupParameters })),
	works("peer_id", "1", setCount(func(s *settings) *count { return &s.PeerID })),
	refused("disable_pqexec", "0", "1", "cmpool passes multi-statement simple queries through; refuse them in the application or with the server's settings"),
	refused("application_name_add_host", "0", "1", "cmpool keeps the client's application_name; see the client's address in SHOW CLIENTS"),
	refused("conffile", "", "/etc/pgbouncer/other.ini", "the file is the one named on the command line (--config or the first argument)"),
	refused("service_name", "pgbouncer", "other", "cmpool does not run as a Windows service"),
	refused("job_name", "pgbouncer", "other", "cmpool does not run as a Windows service"),
	refused("stats_period", "60", "30", "SHOW STATS averages are fixed; use metrics_listen for Prometheus rates"),
	differs("max_prepared_statements", "100", "Prepared statements are always mapped in transaction mode; this is how many each server connection keeps, and 0 means the default (200).",
		setCount(func(s *settings) *count { return &s.MaxPreparedStatements })),
	refused("scram_iterations", "4096", "10000", "cmpool computes SCRAM secrets with 4096 iterations"),

	// Authentication.
	differs("auth_type", "md5", "Same methods except cert, pam, ldap, any; without the key cmpool uses scram-sha-256 (PgBouncer: md5), which also accepts md5 secrets.",
		setString(func(s *settings) *string { return &s.AuthType })),
	works("auth_hba_file", "/etc/pgbouncer/pg_hba.conf", setString(func(s *settings) *string { return &s.AuthHBAFile })),
	refused("auth_ident_file", "", "/etc/pgbouncer/ident.map", "cmpool has no peer authentication: use a password method on the Unix socket"),
	works("auth_file", "/etc/pgbouncer/userlist.txt", setString(func(s *settings) *string { return &s.AuthFile })),
	works("auth_user", "pgbouncer", setString(func(s *settings) *string { return &s.AuthUser })),
	works("auth_query", "SELECT usename, passwd FROM pg_shadow WHERE usename=$1", setString(func(s *settings) *string { return &s.AuthQuery })),
	differs("auth_dbname", "postgres", "Without it auth_query runs in the primary's database, not the client's.",
		setString(func(s *settings) *string { return &s.AuthDBName })),
	refused("auth_ldap_options", "", "ldapserver=ldap.example.com", "cmpool has no LDAP authentication: use auth_query or an auth_file"),

	// Logging.
	refused("syslog", "0", "1", "cmpool logs to stderr and logfile: let journald or the container runtime forward them"),
	refused("syslog_ident", "pgbouncer", "cmpool", "cmpool does not log to syslog"),
	refused("syslog_facility", "daemon", "local0", "cmpool does not log to syslog"),
	differs("log_connections", "0", "Logs connections and disconnections together: either key at 1 logs both.",
		func(_ *settings, st *iniState, v string) error {
			b, err := iniBool(v)
			st.logConnections = &b
			return err
		}),
	differs("log_disconnections", "0", "Logs connections and disconnections together: either key at 1 logs both.",
		func(_ *settings, st *iniState, v string) error {
			b, err := iniBool(v)
			st.logDisconnections = &b
			return err
		}),
	refused("log_pooler_errors", "1", "0", "cmpool always logs the errors it sends to clients"),
	refused("log_stats", "0", "1", "cmpool does not log statistics: use SHOW STATS or metrics_listen"),
	differs("verbose", "1", "0 logs at info, 1 and more at debug (log_level).", func(s *settings, _ *iniState, v string) error {
		n, err := iniInt(v)
		if err == nil && n > 0 {
			s.LogLevel = -4 // slog.LevelDebug
		}
		return err
	}),

	// Console access.
	works("admin_users", "postgres", setList(func(s *settings) *stringList { return &s.AdminUsers })),
	works("stats_users", "stats", setList(func(s *settings) *stringList { return &s.StatsUsers })),

	// Connection sanity checks, timeouts.
	differs("server_reset_query", "DISCARD ALL", "Run in session mode only; an empty value runs nothing, as in PgBouncer.",
		func(s *settings, _ *iniState, v string) error {
			if v == "" {
				v = "-"
			}
			s.ServerResetQuery = v
			return nil
		}),
	refused("server_reset_query_always", "0", "1", "in transaction mode cmpool follows session state itself and resets only what a transaction left behind"),
	works("server_check_delay", "10", setTime(func(s *settings) *duration { return &s.ServerCheckDelay })),
	works("server_check_query", "select 1", setString(func(s *settings) *string { return &s.ServerCheckQuery })),
	refused("server_fast_close", "0", "1", "RECONNECT and reloads close server connections when their transaction ends"),
	differs("server_lifetime", "1800", "0 (use each connection once) is refused.", setTime(func(s *settings) *duration { return &s.ServerLifetime })),
	works("server_idle_timeout", "300", setTime(func(s *settings) *duration { return &s.ServerIdleTimeout })),
	works("server_connect_timeout", "5", setTime(func(s *settings) *duration { return &s.ServerConnectTimeout })),
	differs("server_login_retry", "5", "Same meaning; the default is 1 s (PgBouncer: 15 s), so that a restarted primary is served again within a second. Set 15 for PgBouncer's.", setTime(func(s *settings) *duration { return &s.ServerLoginRetry })),
	works("client_login_timeout", "30", setTime(func(s *settings) *duration { return &s.ClientLoginTimeout })),
	refused("autodb_idle_timeout", "3600", "60", "pools of databases cmpool creates on demand close their servers after server_idle_timeout"),
	refused("dns_max_ttl", "15", "60", "cmpool resolves host names with the system resolver at each connection"),
	refused("dns_nxdomain_ttl", "15", "60", "cmpool resolves host names with the system resolver at each connection"),
	refused("dns_zone_check_period", "0", "60", "cmpool resolves host names with the system resolver at each connection"),
	refused("resolv_conf", "", "/etc/pgbouncer/resolv.conf", "cmpool uses the system resolver: /etc/resolv.conf"),
	refused("query_wait_notify", "0", "5", "cmpool sends no notice while a client waits; watch cl_waiting in SHOW POOLS"),

	// TLS.
	works("client_tls_sslmode", "disable", setString(func(s *settings) *string { return &s.ClientTLSSSLMode })),
	works("client_tls_key_file", "/etc/pgbouncer/server.key", setString(func(s *settings) *string { return &s.ClientTLSKeyFile })),
	works("client_tls_cert_file", "/etc/pgbouncer/server.crt", setString(func(s *settings) *string { return &s.ClientTLSCertFile })),
	works("client_tls_ca_file", "/etc/pgbouncer/root.crt", setString(func(s *settings) *string { return &s.ClientTLSCAFile })),
	works("client_tls_protocols", "secure", setString(func(s *settings) *string { return &s.ClientTLSProtocols })),
	differs("client_tls_ciphers", "default", "TLS 1.2 suites by their IANA names, not OpenSSL cipher strings; default, secure, normal and fast mean Go's secure defaults.",
		setString(func(s *settings) *string { return &s.ClientTLSCiphers })),
	refused("client_tls13_ciphers", "", "TLS_AES_256_GCM_SHA384", "Go does not make TLS 1.3 suites configurable"),
	refused("client_tls_ecdhcurve", "auto", "secp384r1", "Go chooses the curves"),
	refused("client_tls_dheparams", "auto", "legacy", "Go has no finite-field Diffie-Hellman; ECDHE is used"),
	works("server_tls_sslmode", "prefer", setString(func(s *settings) *string { return &s.ServerTLSSSLMode })),
	works("server_tls_ca_file", "/etc/pgbouncer/root.crt", setString(func(s *settings) *string { return &s.ServerTLSCAFile })),
	works("server_tls_key_file", "/etc/pgbouncer/client.key", setString(func(s *settings) *string { return &s.ServerTLSKeyFile })),
	works("server_tls_cert_file", "/etc/pgbouncer/client.crt", setString(func(s *settings) *string { return &s.ServerTLSCertFile })),
	refused("server_tls_protocols", "secure", "tlsv1.3", "TLS towards servers uses pgx's defaults (TLS 1.2 and up)"),
	refused("server_tls_ciphers", "default", "HIGH:!aNULL", "TLS towards servers uses Go's secure cipher suites"),
	refused("server_tls13_ciphers", "", "TLS_AES_256_GCM_SHA384", "Go does not make TLS 1.3 suites configurable"),

	// Dangerous timeouts.
	works("query_timeout", "60", setTime(func(s *settings) *duration { return &s.QueryTimeout })),
	differs("query_wait_timeout", "30", "On timeout the client gets ERROR 57014 and stays connected (PgBouncer disconnects it); 0 waits forever.",
		setTime(func(s *settings) *duration { return &s.QueryWaitTimeout })),
	refused("cancel_wait_timeout", "10", "5", "a cancel request is forwarded at once, never queued"),
	works("client_idle_timeout", "600", setTime(func(s *settings) *duration { return &s.ClientIdleTimeout })),
	works("idle_transaction_timeout", "60", setTime(func(s *settings) *duration { return &s.IdleTransactionTimeout })),
	works("transaction_timeout", "120", setTime(func(s *settings) *duration { return &s.TransactionTimeout })),
	refused("suspend_timeout", "10", "30", "there is no SUSPEND (it serves -R online restart): use so_reuseport and a SIGTERM drain"),

	// Low-level network settings.
	refused("pkt_buf", "4096", "8192", "cmpool sizes its buffers itself"),
	differs("max_packet_size", "1048576", "Applies to client messages; the default is 1 GiB.", setCount(func(s *settings) *count { return &s.MaxPacketSize })),
	refused("listen_backlog", "128", "1024", "cmpool uses the system's backlog (net.core.somaxconn)"),
	refused("sbuf_loopcnt", "5", "20", "each client has its own goroutine; there is no event-loop fairness to tune"),
	works("so_reuseport", "1", setBool(func(s *settings) *bool { return &s.ReusePort })),
	refused("tcp_defer_accept", "1", "0", "cmpool does not set TCP_DEFER_ACCEPT"),
	refused("tcp_socket_buffer", "0", "65536", "cmpool uses the system's socket buffer sizes (net.ipv4.tcp_rmem, tcp_wmem)"),
	works("tcp_keepalive", "0", func(s *settings, _ *iniState, v string) error {
		b, err := iniBool(v)
		s.TCPKeepalive = &b
		return err
	}),
	works("tcp_keepcnt", "5", setCount(func(s *settings) *count { return &s.TCPKeepCnt })),
	works("tcp_keepidle", "60", setTime(func(s *settings) *duration { return &s.TCPKeepIdle })),
	works("tcp_keepintvl", "10", setTime(func(s *settings) *duration { return &s.TCPKeepIntvl })),
	works("tcp_user_timeout", "30000", func(s *settings, _ *iniState, v string) error {
		n, err := iniInt(v) // milliseconds, as in PgBouncer
		if err != nil || n < 0 {
			return fmt.Errorf("want a number of milliseconds, got %q", v)
		}
		s.TCPUserTimeout = duration{d: time.Duration(n) * time.Millisecond, set: true}
		return nil
	}),
}

// databaseKeys are the parameters of a [databases] entry. set is nil for refused ones;
// the entry's parameters are applied by applyDatabase.
var databaseKeys = []pgbKey{
	{name: "dbname", status: keyWorks, example: "app"},
	{name: "host", status: keyDiffers, example: "127.0.0.1", why: "One host name, IP address or Unix socket directory; a comma-separated list is refused (list replicas in replicas or REPLICA_URL). Without host, the primary's."},
	{name: "port", status: keyWorks, example: "5432"},
	{name: "user", status: keyWorks, example: "app"},
	{name: "password", status: keyWorks, example: "secret"},
	{name: "auth_user", status: keyWorks, example: "pgbouncer"},
	refused("auth_query", "", "SELECT 1", "auth_query is global: set it in [pgbouncer]; auth_dbname may differ per database"),
	{name: "auth_dbname", status: keyWorks, example: "postgres"},
	{name: "pool_size", status: keyWorks, example: "5"},
	{name: "min_pool_size", status: keyWorks, example: "1"},
	{name: "reserve_pool_size", status: keyWorks, example: "2", why: "reserve_pool, its old name, works too."},
	refused("connect_query", "", "SET search_path TO app", "use ALTER ROLE … SET or ALTER DATABASE … SET on the server, or the client's options"),
	{name: "pool_mode", status: keyWorks, example: "session"},
	refused("load_balance_hosts", "disable", "round-robin", "list replicas in replicas or REPLICA_URL: cmpool balances reads among them (balance)"),
	{name: "max_db_connections", status: keyWorks, example: "10"},
	refused("max_db_client_connections", "0", "10", "cmpool limits clients only as a whole: use max_client_conn"),
	refused("server_lifetime", "", "600", "server_lifetime is global: set it in [pgbouncer]"),
	{name: "client_encoding", status: keyWorks, example: "UTF8"},
	{name: "datestyle", status: keyWorks, example: "ISO"},
	{name: "timezone", status: keyWorks, example: "UTC"},
}

// userKeys are the parameters of a [users] entry.
var userKeys = []pgbKey{
	refused("pool_size", "", "5", "pool sizes are per database: set pool_size in [databases] or default_pool_size"),
	refused("reserve_pool_size", "", "2", "reserve pools are per database: set reserve_pool_size in [databases] or [pgbouncer]"),
	{name: "pool_mode", status: keyWorks, example: "session"},
	{name: "max_user_connections", status: keyWorks, example: "10"},
	refused("query_timeout", "", "30", "query_timeout is global: set it in [pgbouncer]"),
	refused("idle_transaction_timeout", "", "30", "idle_transaction_timeout is global: set it in [pgbouncer]"),
	refused("transaction_timeout", "", "30", "transaction_timeout is global: set it in [pgbouncer]"),
	refused("client_idle_timeout", "", "30", "client_idle_timeout is global: set it in [pgbouncer]"),
	refused("max_user_client_connections", "0", "10", "cmpool limits clients only as a whole: use max_client_conn"),
}

// peerKeys are the parameters of a [peers] entry.
var peerKeys = []pgbKey{
	{name: "host", status: keyWorks, example: "127.0.0.1"},
	{name: "port", status: keyWorks, example: "6432"},
	refused("pool_size", "", "10", "a forwarded cancel request uses one connection of its own"),
}

// lookupKey finds name in keys.
func lookupKey(keys []pgbKey, name string) (pgbKey, bool) {
	i := slices.IndexFunc(keys, func(k pgbKey) bool { return k.name == name })
	if i < 0 {
		return pgbKey{}, false
	}
	return keys[i], true
}

// refusal is the error for a refused key, unless v is the value it accepts.
func (k pgbKey) refusal(where, v string) error {
	if k.accept != "" && sameValue(k.accept, v) || k.accept == "" && v == "" {
		return nil
	}
	return fmt.Errorf("%s: %s = %s is not supported: %s", where, k.name, v, k.why)
}

// sameValue compares two setting values, as numbers when both are.
func sameValue(a, b string) bool {
	fa, errA := strconv.ParseFloat(a, 64)
	fb, errB := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if errA == nil && errB == nil {
		return fa == fb
	}
	return strings.EqualFold(a, strings.TrimSpace(b))
}

// applyINI applies the entries of a pgbouncer.ini to s. PgBouncer's defaults that differ
// from cmpool's come first (pool_mode session, max_client_conn 100, a Unix socket in
// /tmp), so that a pgbouncer.ini behaves as it did under PgBouncer.
func applyINI(entries []iniEntry, s *settings) error {
	s.PoolMode = poolMode(iniDefaultMode)
	s.MaxClientConn = iniMaxClients
	s.UnixSocketDir = iniSocketDir
	var st iniState
	var dbs []iniEntry
	for _, e := range entries {
		switch e.Section {
		case "pgbouncer":
			k, ok := lookupKey(pgbouncerKeys, e.Key)
			if !ok {
				return fmt.Errorf("%s: unknown key %q in [pgbouncer]", e.where(), e.Key)
			}
			if k.set == nil {
				if err := k.refusal(e.where(), e.Value); err != nil {
					return err
				}
				continue
			}
			if err := k.set(s, &st, e.Value); err != nil {
				return fmt.Errorf("%s: %s: %w", e.where(), e.Key, err)
			}
		case "databases":
			dbs = append(dbs, e)
		case "users":
			if err := applyUser(e, s); err != nil {
				return err
			}
		case "peers":
			if err := applyPeer(e, s); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unknown section [%s] (want pgbouncer, databases, users or peers)", e.where(), e.Section)
		}
	}
	if err := applyDatabases(dbs, s); err != nil {
		return err
	}
	if st.logConnections != nil || st.logDisconnections != nil {
		s.LogConnections = st.logConnections != nil && *st.logConnections || st.logDisconnections != nil && *st.logDisconnections
	} else {
		s.LogConnections = true // PgBouncer logs both by default
	}
	if st.listenAddr != "" || st.listenPort != "" {
		s.Listen = listenAddrs(st.listenAddr, st.listenPort)
	}
	return s.checkDurations()
}

// listenAddrs turns listen_addr (a comma list, "*" for every address) and listen_port into
// a comma-separated list of host:port addresses.
func listenAddrs(addrs, port string) string {
	if port == "" {
		port = "6432"
	}
	if addrs == "" {
		addrs = "127.0.0.1"
	}
	var out []string
	for a := range strings.SplitSeq(addrs, ",") {
		a = strings.TrimSpace(a)
		if a == "*" {
			a = ""
		}
		out = append(out, net.JoinHostPort(a, port))
	}
	return strings.Join(out, ",")
}

// applyUser applies a [users] entry: name = pool_mode=... max_user_connections=...
func applyUser(e iniEntry, s *settings) error {
	params, err := parseConnString(e.Value)
	if err != nil {
		return fmt.Errorf("%s: user %s: %w", e.where(), e.Key, err)
	}
	if s.Users == nil {
		s.Users = map[string]userSettings{}
	}
	u := s.Users[e.Key]
	for _, kv := range params {
		k, ok := lookupKey(userKeys, kv[0])
		if !ok {
			return fmt.Errorf("%s: user %s: unknown parameter %q", e.where(), e.Key, kv[0])
		}
		switch kv[0] {
		case "pool_mode":
			err = u.PoolMode.Set(kv[1])
		case "max_user_connections":
			u.MaxUserConnections, err = iniCount(kv[1])
		default:
			err = k.refusal("user "+e.Key, kv[1])
		}
		if err != nil {
			return fmt.Errorf("%s: user %s: %w", e.where(), e.Key, err)
		}
	}
	s.Users[e.Key] = u
	return nil
}

// applyPeer applies a [peers] entry: id = host=... port=...
func applyPeer(e iniEntry, s *settings) error {
	params, err := parseConnString(e.Value)
	if err != nil {
		return fmt.Errorf("%s: peer %s: %w", e.where(), e.Key, err)
	}
	host, port := "", "6432"
	for _, kv := range params {
		k, ok := lookupKey(peerKeys, kv[0])
		if !ok {
			return fmt.Errorf("%s: peer %s: unknown parameter %q", e.where(), e.Key, kv[0])
		}
		switch kv[0] {
		case "host":
			host = kv[1]
		case "port":
			port = kv[1]
		default:
			if err := k.refusal("peer "+e.Key, kv[1]); err != nil {
				return fmt.Errorf("%s: %w", e.where(), err)
			}
		}
	}
	if host == "" || strings.HasPrefix(host, "/") {
		return fmt.Errorf("%s: peer %s: want host=ADDRESS (a Unix socket is not supported)", e.where(), e.Key)
	}
	if s.Peers == nil {
		s.Peers = map[string]string{}
	}
	s.Peers[e.Key] = net.JoinHostPort(host, port)
	return nil
}

// loadINI reads the pgbouncer.ini at path over s.
func loadINI(path string, s *settings) error {
	entries, err := readINIFile(path)
	if err != nil {
		return err
	}
	if err := applyINI(entries, s); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// isConfigFile reports whether a first argument that is no subcommand names a
// configuration file: one that exists, or whose name ends in .ini or .toml.
func isConfigFile(arg string) bool {
	if strings.HasSuffix(arg, ".ini") || strings.HasSuffix(arg, ".toml") {
		return true
	}
	fi, err := os.Stat(arg)
	return err == nil && fi.Mode().IsRegular()
}

// pgbouncerFlags takes PgBouncer's command-line options out of args: -v (--verbose) logs
// at debug level and -q (--quiet) logs to the logfile only, as in PgBouncer; -R, -d and -u
// are refused, saying what to use instead. It returns the other arguments.
func pgbouncerFlags(args []string) (rest []string, verbose, quiet bool, err error) {
	for i, a := range args {
		switch a {
		case "-v", "--verbose", "-vv":
			verbose = true
			continue
		case "-q", "--quiet":
			quiet = true
			continue
		case "--":
			return append(rest, args[i:]...), verbose, quiet, nil
		}
		if err := refusePgBouncerFlag(a); err != nil {
			return nil, false, false, err
		}
		rest = append(rest, a)
	}
	return rest, verbose, quiet, nil
}

// refusePgBouncerFlag refuses a PgBouncer command-line option that cmpool has no
// equivalent for, saying what to use instead.
func refusePgBouncerFlag(a string) error {
	switch a {
	case "-R", "--reboot":
		return errors.New("-R (online restart) is not supported: run the new process with so_reuseport = 1 " +
			"(--reuse-port) next to the old one, then send the old one SIGTERM to drain it")
	case "-d", "--daemon":
		return errors.New("-d (daemon) is not supported: cmpool runs in the foreground; let systemd or the container runtime run it in the background")
	case "-u", "--user":
		return errors.New("-u (switch user) is not supported: start cmpool as that user")
	}
	return nil
}
