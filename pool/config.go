package pool

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"time"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/router"
	"github.com/jackc/pgx/v5/pgconn"
)

// Mode is a pooling mode: how long a client keeps a server connection.
type Mode string

const (
	// ModeSession lends a server connection for the client's whole session.
	ModeSession Mode = "session"
	// ModeTransaction lends a server connection for one transaction (the default).
	ModeTransaction Mode = "transaction"
	// ModeStatement lends a server connection for one statement; multi-statement
	// transactions are refused.
	ModeStatement Mode = "statement"
)

// lease is m for the lease engine.
func (m Mode) lease() lease.Mode {
	switch m {
	case ModeSession:
		return lease.Session
	case ModeStatement:
		return lease.Statement
	}
	return lease.Transaction
}

// ParseMode parses "session", "transaction" or "statement".
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeSession, ModeTransaction, ModeStatement:
		return Mode(s), nil
	}
	return "", fmt.Errorf("pool: unknown pool mode %q (want session, transaction or statement)", s)
}

// Config configures a Server. The zero value of every field has a documented meaning;
// New validates the Config and fills in defaults.
type Config struct {
	// Listen is the TCP address ListenAndServe listens on. Empty means "127.0.0.1:6432".
	Listen string

	// ReusePort makes ListenAndServe bind with SO_REUSEPORT (PgBouncer's so_reuseport), so
	// that several cmpool processes can share one address. False means an exclusive bind.
	// Linux only.
	ReusePort bool

	// PeerID is this instance's id among several cmpool instances that share clients
	// (PgBouncer's peer_id), from 1 to MaxPeerID. Cancel keys carry it, so that an instance
	// receiving a CancelRequest for another forwards it there (see Peers). Zero means
	// no peering: cancel keys are wholly random. With a PeerID, MaxClientConn is at most
	// 65535.
	PeerID int

	// Peers maps the peer id of every instance (this one's may be included) to the address
	// a CancelRequest for it is forwarded to (PgBouncer's [peers] section). Nil means none:
	// a cancel request for another instance is dropped.
	Peers map[int]string

	// Primary is the connection URL (or keyword/value DSN) of the primary server. Required.
	// Its host, port, password and TLS settings are used for every server connection; the
	// database and user come from each client unless a Databases entry says otherwise.
	Primary string

	// Replicas are connection URLs of streaming replicas. Empty means no replicas, and
	// every query goes to the primary. With replicas, reads are routed to them in
	// transaction and statement modes (see docs/routing.md).
	Replicas []string

	// Balance picks among usable replicas: "round_robin", "random" or
	// "least_outstanding". Empty means round_robin.
	Balance string

	// MaxReplicaLagBytes skips replicas further behind the primary than this many bytes
	// of WAL. Zero means no byte limit.
	MaxReplicaLagBytes int64

	// MaxReplicaLag skips replicas whose replay is older than this while they are behind.
	// Zero means no time limit.
	MaxReplicaLag time.Duration

	// ReplicaCheckInterval is how often replicas' health, lag and role are checked. Zero
	// means 1s.
	ReplicaCheckInterval time.Duration

	// ReplicaBanTime is how long a failing replica gets no reads; it doubles while the
	// replica keeps failing. Zero means 5s.
	ReplicaBanTime time.Duration

	// Consistency is the read-your-writes mode: "user" (a client's reads see every write
	// committed through cmpool by the same user on the same database, on any connection
	// and through any peer), "origin" (the same, from the same client address only),
	// "session" (the client connection's own writes), "global" (every write cmpool has
	// seen commit) or "eventual" (no waiting). Empty means user.
	Consistency string

	// RWWait is how long a read waits for a replica to replay the writes it must see
	// before it goes to the primary instead. Zero means 50ms; negative means never wait.
	RWWait time.Duration

	// PoolMode is the default pooling mode. Empty means ModeTransaction.
	PoolMode Mode

	// DefaultPoolSize is the most server connections per (database, user, backend) pool.
	// Zero means 20.
	DefaultPoolSize int

	// MinPoolSize is how many server connections each pool keeps open even when idle,
	// once the pool has been used. Zero means none are kept.
	MinPoolSize int

	// MaxClientConn is the most client connections served at once; past it a new client
	// gets SQLSTATE 53300. Zero means 1000.
	MaxClientConn int

	// ServerIdleTimeout closes server connections idle longer than this. Zero means 600s;
	// a negative value disables it.
	ServerIdleTimeout time.Duration

	// ServerLifetime closes server connections older than this when they are returned.
	// Zero means 3600s; a negative value disables it.
	ServerLifetime time.Duration

	// ServerConnectTimeout bounds connecting and authenticating to a server.
	// Zero means 15s.
	ServerConnectTimeout time.Duration

	// QueryWaitTimeout is how long a client may wait for a server connection before it
	// gets an error (SQLSTATE 57014). Zero means 120s; a negative value waits forever.
	QueryWaitTimeout time.Duration

	// QueryTimeout bounds how long a server may take to answer a request (PgBouncer's
	// query_timeout). When a request has run this long, cmpool sends the server a cancel
	// request: the client gets the server's ERROR 57014 and keeps its session. When the
	// server has still not answered at twice this time (it is hung, stopped or
	// unreachable), the server connection is closed and the client gets FATAL 57014. The
	// second bound counts from the last message sent while an answer is due to the end of
	// that answer (its rows included, as in PgBouncer); a transaction left idle by its
	// client is not timed. Zero means no limit. Set it above the servers' statement_timeout.
	QueryTimeout time.Duration

	// ClientLoginTimeout bounds a client's startup and login. Zero means 60s.
	ClientLoginTimeout time.Duration

	// ServerResetQuery runs on a server connection before it goes back to the pool in
	// session mode. Empty means "DISCARD ALL"; "-" disables it.
	ServerResetQuery string

	// MaxPacketSize is the largest client message body accepted, in bytes; a larger
	// message gets SQLSTATE 08P01 and the connection is closed. Zero means 1 GiB.
	MaxPacketSize int

	// MaxPreparedStatements is how many of cmpool's shared prepared statements each server
	// connection keeps; the least recently used are closed past it. Zero means 200.
	MaxPreparedStatements int

	// Databases overrides settings per client-visible database name. A client asking for
	// a database with no entry gets the primary's host with the client's database name.
	Databases map[string]Database

	// AuthFile is a PgBouncer-format userlist.txt ("user" "secret" per line). Its secrets
	// (plain, md5 or SCRAM-SHA-256) check client logins; plain-text passwords are also used
	// to log in to servers as that user. Empty means none.
	AuthFile string

	// AdminUsers may use every command of the admin console (the virtual database
	// "cmpool", alias "pgbouncer"). Empty means nobody.
	AdminUsers []string

	// StatsUsers may run the admin console's SHOW commands. Empty means nobody besides
	// AdminUsers.
	StatsUsers []string

	// ClientIdleTimeout closes a client that has sent nothing for this long while holding
	// no server, with FATAL 57P05. Zero means never.
	ClientIdleTimeout time.Duration

	// IdleTransactionTimeout ends a client's session when it holds a server idle in a
	// transaction for this long: the server is rolled back and returned, and the client
	// gets FATAL 25P03. Zero means never.
	IdleTransactionTimeout time.Duration

	// ParkIdleAfter is how long a client holds no server before it is parked, on the event
	// loops too: its socket waits in an epoll set with the other idle clients (Linux; see
	// park.go), and the client costs its socket and a small struct. Zero means 1s; negative:
	// never parked (a goroutine each, or waiting on a loop). Not changed by a reload.
	ParkIdleAfter time.Duration

	// EventLoops is how many event loops run client sessions (Linux; see loops.go), so
	// that a session has a goroutine only while it has something to do. Zero means none
	// (the default: they do not pay yet, docs/benchmarks/analysis.md); negative means one
	// per usable CPU. Not changed by a reload.
	EventLoops int

	// ShutdownTimeout is how long Shutdown-by-signal and the console's SHUTDOWN wait for
	// transactions in flight before closing every client. Zero means 30s.
	ShutdownTimeout time.Duration

	// LogConnections logs each client connection and disconnection at info level
	// (PgBouncer's log_connections and log_disconnections). False logs them at debug.
	LogConnections bool

	// SlowTransaction logs transactions that held a server longer than this, at warn
	// level. Zero means no slow-transaction log.
	SlowTransaction time.Duration

	// Authenticator, when set, looks up the secrets of users found neither in Users nor
	// in AuthFile, before AuthQuery. Nil means none.
	Authenticator Authenticator

	// Router, when set, is asked where each transaction goes, after cmpool's own
	// classification and hints: it may keep cmpool's choice or force the primary or a
	// replica. Nil means cmpool decides alone. It runs at the start of every routed
	// transaction: it must be fast.
	Router Router

	// Observer receives an event for each query, transaction, client wait and error,
	// for metrics or tracing. Nil means none. Its methods run on the proxy's hot path:
	// they must be fast and must not block.
	Observer Observer

	// LoadConfig is called by the admin console's RELOAD to obtain the configuration to
	// apply (the binary re-reads its file). Nil means RELOAD re-applies the current
	// configuration, which refreshes cached function volatilities.
	LoadConfig func() (Config, error)
	// AuthType is how clients prove who they are: "scram-sha-256", "md5", "password"
	// (cleartext; "plain" is an alias), "trust", "reject", or "hba" to follow AuthHBAFile.
	// Empty means scram-sha-256, never trust: a client proves a secret from Users,
	// AuthFile, the Authenticator or AuthQuery, or else the password cmpool holds for its
	// user (the primary URL's password, for the URL's user); other users are refused like
	// a wrong password. "trust" asks for no password, and when users are listed (AuthFile,
	// Users, AuthUser or the Authenticator) admits only them. Database and User entries
	// can override it.
	AuthType string

	// AuthHBAFile is a pg_hba.conf-style file (local, host, hostssl, hostnossl lines with
	// database, user, address and method), used when AuthType is "hba". Empty means none.
	AuthHBAFile string

	// Users are [users.NAME] entries: secrets and per-user auth rules. Nil means none.
	Users map[string]User

	// AuthUser is the user that runs AuthQuery on the primary to look up the secrets of
	// users not found in Users or AuthFile. Its own password comes from the primary URL,
	// Users or AuthFile. Empty means auth_query is off.
	AuthUser string

	// AuthQuery returns (user name, secret) for $1. Empty means PgBouncer's default, over
	// pg_authid (DefaultAuthQuery).
	AuthQuery string

	// AuthDBName is the database AuthQuery runs in: a Databases name (its server and
	// database name), or else a database of that name on the primary. Empty means the
	// primary URL's database. PgBouncer's auth_dbname.
	AuthDBName string

	// AuthCacheTTL is how long a secret (or the absence of a user) found by AuthQuery is
	// kept. Zero means 60s; a negative value queries at every login.
	AuthCacheTTL time.Duration

	// AuthPlainWithoutTLS allows the "password" method (cleartext) on connections without
	// TLS. False means such logins are refused with SQLSTATE 28000.
	AuthPlainWithoutTLS bool

	// AuthFailureLimit is how many failed logins one client address may have within a
	// minute; past it, that address's logins are refused (SQLSTATE 28000) until the minute
	// ends. Zero means 10; a negative value disables the limit.
	AuthFailureLimit int

	// ClientTLSSSLMode is TLS towards clients: "disable", "allow", "prefer" (TLS when the
	// client asks), "require" (clients must use TLS), "verify-ca" or "verify-full" (clients
	// must also present a certificate signed by ClientTLSCAFile; verify-full also wants its
	// common name to be the user name). Empty means disable.
	ClientTLSSSLMode string
	// ClientTLSCertFile and ClientTLSKeyFile are cmpool's certificate and key (PEM),
	// required unless ClientTLSSSLMode is disable. Reloaded by ReloadTLS.
	ClientTLSCertFile string
	ClientTLSKeyFile  string
	// ClientTLSCAFile holds the CAs (PEM) that sign client certificates. Empty means client
	// certificates are not asked for.
	ClientTLSCAFile string
	// ClientTLSProtocols lists the TLS versions allowed, comma-separated: tlsv1.2,
	// tlsv1.3, or "secure" (both) or "all" (tlsv1.0 and up). Empty means secure.
	ClientTLSProtocols string
	// ClientTLSCiphers lists the TLS 1.2 cipher suites allowed, by their IANA names,
	// separated by commas or colons. Empty, "default", "secure", "normal" or "fast" mean
	// Go's secure defaults. TLS 1.3 suites are not configurable.
	ClientTLSCiphers string

	// ServerTLSSSLMode is TLS towards servers, as libpq's sslmode: disable, allow, prefer,
	// require, verify-ca or verify-full. Empty means what each server URL says.
	ServerTLSSSLMode string
	// ServerTLSCAFile is the CA (PEM) that signs server certificates (sslrootcert). Empty
	// means what each server URL says.
	ServerTLSCAFile string
	// ServerTLSCertFile and ServerTLSKeyFile are a client certificate and key (PEM) to
	// present to servers (sslcert, sslkey). Empty means none unless the URL says.
	ServerTLSCertFile string
	ServerTLSKeyFile  string

	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// PgBouncer's limits and server checks, with its meanings (see
	// docs/migrating-from-pgbouncer.md). Zero values mean PgBouncer's defaults.

	// MaxDBConnections bounds the server connections of one database, across its users
	// and pools (max_db_connections). Zero means no limit.
	MaxDBConnections int
	// MaxUserConnections bounds the server connections of one user, across its databases
	// (max_user_connections). Zero means no limit.
	MaxUserConnections int
	// ReservePoolSize is how many more connections a pool may open for clients that
	// waited ReservePoolTimeout (reserve_pool_size, reserve_pool_timeout). Zero means
	// none; a zero timeout means 5s.
	ReservePoolSize    int
	ReservePoolTimeout time.Duration
	// ServerRoundRobin lends idle servers in turn instead of the most recently used
	// (server_round_robin).
	ServerRoundRobin bool
	// ServerCheckQuery is run on a server idle for longer than ServerCheckDelay before it
	// is lent (server_check_query, server_check_delay). Empty means an empty query; "-"
	// disables the check. A zero delay means 30s.
	ServerCheckQuery string
	ServerCheckDelay time.Duration
	// ServerLoginRetry is how long to wait after a failed server login before trying
	// again (server_login_retry). Zero means 1s (PgBouncer: 15s).
	ServerLoginRetry time.Duration
	// TransactionTimeout closes a client whose transaction has been open longer
	// (transaction_timeout). Zero means none.
	TransactionTimeout time.Duration
	// TCP keepalive on client and server sockets (tcp_keepalive, tcp_keepidle,
	// tcp_keepintvl, tcp_keepcnt, tcp_user_timeout). Zero durations and counts mean the
	// operating system's; TCPKeepaliveOff turns keepalive off.
	TCPKeepaliveOff bool
	TCPKeepIdle     time.Duration
	TCPKeepIntvl    time.Duration
	TCPKeepCnt      int
	TCPUserTimeout  time.Duration
	// IgnoreStartupParameters are startup parameters clients may send that cmpool drops
	// instead of refusing (ignore_startup_parameters).
	IgnoreStartupParameters []string
	// TrackExtraParameters are parameters, beyond the ones cmpool always follows, that it
	// keeps per client and applies on every server the client uses
	// (track_extra_parameters).
	TrackExtraParameters []string

	// Session pinning in transaction and statement modes (docs/pooling.md).

	// PinSessionStateOff turns session pinning off (pin_session_state = false): session
	// advisory locks and WITH HOLD cursors then get a warning and the server is reset
	// when the transaction ends, and temporary objects are refused. False means a client
	// that leaves such state on its server keeps that server until the state is gone.
	PinSessionStateOff bool
	// MaxPinned is the most clients of one pool (database, user) pinned to a server at
	// once (max_pinned); a statement that would pin one more is refused (53400). Zero
	// means half the pool's size, at least 1.
	MaxPinned int
}

// Database is a [databases.NAME] entry.
type Database struct {
	// URL is the server this database name maps to. Empty means the primary with the
	// client's database name.
	URL string
	// DBName is the database name on the server. Empty means the URL's database, or the
	// client's database name when URL is empty.
	DBName string
	// User forces server connections to log in as this user. Empty means the client's user.
	User string
	// Password is the password for User. Empty means the URL's or the auth file's.
	Password string
	// PoolSize overrides DefaultPoolSize for this database. Zero means DefaultPoolSize.
	PoolSize int
	// PoolMode overrides PoolMode for this database. Empty means PoolMode.
	PoolMode Mode
	// Route is "replica" to send everything for this database name to replicas (a
	// read-only name, such as the seed's replicaUrl), "primary" to never route, or
	// empty for automatic routing.
	Route string
	// AuthType overrides Config.AuthType for clients of this database. Empty means
	// Config.AuthType.
	AuthType string
	// AuthDBName overrides Config.AuthDBName for clients of this database: auth_query
	// looks their users up there. Empty means Config.AuthDBName.
	AuthDBName string
	// MinPoolSize overrides Config.MinPoolSize for this database (min_pool_size).
	MinPoolSize int
	// ReservePool overrides Config.ReservePoolSize for this database (reserve_pool).
	ReservePool int
	// MaxDBConnections overrides Config.MaxDBConnections for this database.
	MaxDBConnections int
	// AuthUser overrides Config.AuthUser for clients of this database (auth_user).
	AuthUser string
	// ClientEncoding, DateStyle and TimeZone are set on this database's server
	// connections at login (client_encoding, datestyle, timezone).
	ClientEncoding, DateStyle, TimeZone string
	// PinSessionState overrides Config.PinSessionStateOff for this database
	// (pin_session_state). Nil means Config's.
	PinSessionState *bool
	// MaxPinned overrides Config.MaxPinned for this database (max_pinned). Zero means
	// Config's.
	MaxPinned int
}

// User is a [users.NAME] entry.
type User struct {
	// Password is the user's secret: a plain password, an md5 secret ("md5..." as
	// pg_authid stores it) or a SCRAM-SHA-256 secret. A plain password is also used to
	// log in to servers. Empty means the user has no secret here.
	Password string
	// AuthType overrides Config.AuthType and Database.AuthType for this user. Empty means
	// theirs.
	AuthType string
	// PoolMode overrides the database's and Config's pool mode for this user's clients
	// ([users] pool_mode). Empty means theirs.
	PoolMode Mode
	// MaxUserConnections overrides Config.MaxUserConnections for this user.
	MaxUserConnections int
}

// Defaults applied by New.
const (
	DefaultListen                = "127.0.0.1:6432"
	DefaultPoolSizeValue         = 20
	DefaultMaxClientConn         = 1000
	DefaultServerIdleTimeout     = 600 * time.Second
	DefaultServerLifetime        = 3600 * time.Second
	DefaultServerConnectTimeout  = 15 * time.Second
	DefaultQueryWaitTimeout      = 120 * time.Second
	DefaultClientLoginTimeout    = 60 * time.Second
	DefaultServerResetQuery      = "DISCARD ALL"
	DefaultMaxPacketSize         = 1 << 30
	DefaultMaxPreparedStatements = 200
	DefaultShutdownTimeout       = 30 * time.Second
)

// ErrNoPrimary is returned by New when Config.Primary is empty.
var ErrNoPrimary = errors.New("pool: no primary configured (set Primary, --primary or DATABASE_URL)")

// withDefaults validates c and returns a copy with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if c.Primary == "" {
		return c, ErrNoPrimary
	}
	if err := c.unbuilt(); err != nil {
		return c, err
	}
	if err := c.checkLimits(); err != nil {
		return c, err
	}
	if err := c.checkPinning(); err != nil {
		return c, err
	}
	if err := c.applyServerTLS(); err != nil {
		return c, err
	}
	if _, err := pgconn.ParseConfig(c.Primary); err != nil {
		return c, fmt.Errorf("pool: primary: %w", err)
	}
	for i, r := range c.Replicas {
		if _, err := pgconn.ParseConfig(r); err != nil {
			return c, fmt.Errorf("pool: replica %d: %w", i, err)
		}
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.PoolMode == "" {
		c.PoolMode = ModeTransaction
	}
	if _, err := ParseMode(string(c.PoolMode)); err != nil {
		return c, err
	}
	if c.DefaultPoolSize == 0 {
		c.DefaultPoolSize = DefaultPoolSizeValue
	}
	if c.DefaultPoolSize < 0 || c.MinPoolSize < 0 || c.MaxClientConn < 0 {
		return c, errors.New("pool: pool sizes and max_client_conn must not be negative")
	}
	if c.MinPoolSize > c.DefaultPoolSize {
		return c, fmt.Errorf("pool: min_pool_size %d is larger than default_pool_size %d", c.MinPoolSize, c.DefaultPoolSize)
	}
	if c.MaxClientConn == 0 {
		c.MaxClientConn = DefaultMaxClientConn
	}
	if c.ServerIdleTimeout == 0 {
		c.ServerIdleTimeout = DefaultServerIdleTimeout
	}
	if c.ServerLifetime == 0 {
		c.ServerLifetime = DefaultServerLifetime
	}
	if c.ServerConnectTimeout <= 0 {
		c.ServerConnectTimeout = DefaultServerConnectTimeout
	}
	if c.QueryWaitTimeout == 0 {
		c.QueryWaitTimeout = DefaultQueryWaitTimeout
	}
	if c.PeerID < 0 || c.PeerID > MaxPeerID {
		return c, fmt.Errorf("pool: peer_id %d out of range (1 to %d, or 0 for none)", c.PeerID, MaxPeerID)
	}
	if c.PeerID > 0 && c.MaxClientConn > maxPeeredClients {
		return c, fmt.Errorf("pool: max_client_conn %d is more than %d, the most an instance with a peer_id serves", c.MaxClientConn, maxPeeredClients)
	}
	for id, addr := range c.Peers {
		if id < 1 || id > MaxPeerID {
			return c, fmt.Errorf("pool: peer id %d out of range (1 to %d)", id, MaxPeerID)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return c, fmt.Errorf("pool: peer %d: address %q: %w", id, addr, err)
		}
	}
	if c.QueryTimeout < 0 {
		c.QueryTimeout = 0
	}
	if c.ClientLoginTimeout <= 0 {
		c.ClientLoginTimeout = DefaultClientLoginTimeout
	}
	if c.ServerResetQuery == "" {
		c.ServerResetQuery = DefaultServerResetQuery
	}
	if c.MaxPreparedStatements <= 0 {
		c.MaxPreparedStatements = DefaultMaxPreparedStatements
	}
	if c.MaxPacketSize <= 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	for name, d := range c.Databases {
		if d.URL != "" {
			if _, err := pgconn.ParseConfig(d.URL); err != nil {
				return c, fmt.Errorf("pool: database %q: %w", name, err)
			}
		}
		if d.PoolMode != "" {
			if _, err := ParseMode(string(d.PoolMode)); err != nil {
				return c, fmt.Errorf("pool: database %q: %w", name, err)
			}
		}
		if d.PoolSize < 0 {
			return c, fmt.Errorf("pool: database %q: negative pool_size", name)
		}
	}
	switch c.Balance {
	case "":
		c.Balance = "round_robin"
	case "round_robin", "random", "least_outstanding":
	default:
		return c, fmt.Errorf("pool: unknown balance %q (want round_robin, random or least_outstanding)", c.Balance)
	}
	switch c.Consistency {
	case "":
		c.Consistency = router.ConsistencyUser
	case router.ConsistencyUser, router.ConsistencyOrigin, router.ConsistencySession, router.ConsistencyGlobal, router.ConsistencyEventual:
	default:
		return c, fmt.Errorf("pool: unknown consistency %q (want user, origin, session, global or eventual)", c.Consistency)
	}
	if c.RWWait == 0 {
		c.RWWait = 50 * time.Millisecond
	}
	c.Databases = maps.Clone(c.Databases) // the caller's map is left as it is
	for name, d := range c.Databases {
		if d.Route == "" {
			continue
		}
		route, err := router.ParseRoute(d.Route)
		if err != nil {
			return c, fmt.Errorf("pool: database %q: unknown route %q (want primary, replica or auto)", name, d.Route)
		}
		d.Route = route
		c.Databases[name] = d
	}
	if c.ClientIdleTimeout < 0 || c.IdleTransactionTimeout < 0 || c.QueryTimeout < 0 || c.ShutdownTimeout < 0 || c.SlowTransaction < 0 {
		return c, errors.New("pool: timeouts must not be negative")
	}
	if c.ParkIdleAfter == 0 {
		c.ParkIdleAfter = defaultParkIdleAfter
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if err := c.checkAuth(); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
