package admin

import (
	"sort"
	"time"

	"github.com/cmlite/cmpool/router"
)

// Parts selects what a Snapshot holds beyond the pools, the clients (logged in or not,
// waiting or not), the replicas, the peers and the pause and shutdown state, which it
// always holds.
type Parts uint

const (
	// WithConnections fills in the clients' details and Servers (SHOW CLIENTS, SERVERS).
	WithConnections Parts = 1 << iota
	// WithDatabases fills in Databases (SHOW DATABASES, LISTS).
	WithDatabases
	// WithConfig fills in Config (SHOW CONFIG).
	WithConfig
)

// Snapshot is a read-only view of a server at one moment: what the console shows, and
// what the server's Stat is built from. Its maps and slices are not to be changed.
type Snapshot struct {
	// Pools has one entry per (database, user, backend) pool, sorted by database, user
	// and backend: the live pools, and pools replaced by a reload or a promotion (Live
	// false) whose counters still count, so that no total goes backwards.
	Pools []Pool
	// Clients has every client connection, from accept to close, in no order.
	Clients []Client
	// Servers has every server connection of the live pools, in no order; only with
	// WithConnections.
	Servers []ServerConn
	// Databases has the configured databases and those with a live pool, in no order;
	// only with WithDatabases.
	Databases []Database
	// Config is SHOW CONFIG's rows; only with WithConfig.
	Config []ConfigEntry
	// Replicas describes each configured replica; empty without replicas.
	Replicas []router.ReplicaStatus
	// Primary is the replica monitor's view of the primary; zero without replicas.
	Primary router.PrimaryStatus
	// Peers are the [peers] in force: peer id -> "host:port".
	Peers map[int]string
	// Averages are the per-database averages of the last stats period; nil before the
	// first one ends.
	Averages map[string]Averages
	// PausedAll is set by a PAUSE of everything; Paused lists the databases paused one
	// by one, sorted.
	PausedAll bool
	Paused    []string
	// ShuttingDown is set once the server's shutdown has begun.
	ShuttingDown bool
	// Uptime is how long the server has existed.
	Uptime time.Duration
	// Now is when the snapshot was taken (replicas' bans are compared with it).
	Now time.Time
}

// Pool is one (database, user, backend) pool of server connections.
type Pool struct {
	Database, User string
	// Backend is "primary" or the replica's host:port; "replica N" for a replaced pool of
	// replica N that has no live successor.
	Backend string
	// Live is false for a pool replaced by a reload or a promotion: only Totals count,
	// the rest is zero.
	Live bool
	Mode string
	// Server connections: open in all, idle, lent to a client, logging in, and the most
	// allowed.
	Servers, Idle, Active, Login, Max int
	// Cancel requests in progress: clients' requests not yet sent (CancelsWaiting), sent
	// and not yet answered (CancelsActive); connections open to send a cancel
	// (CancelConns); servers with a cancel in flight (BeingCanceled).
	CancelsWaiting, CancelsActive, CancelConns, BeingCanceled int
	// Totals are the pool's counters, with those of the pools it replaced.
	Totals Totals
}

// Client is one client connection.
type Client struct {
	// LoggedIn is set once the login is complete; the fields below it are empty before.
	LoggedIn bool
	// Admin is set for a console client, whose Database is the console's.
	Admin          bool
	User, Database string
	// Waiting is set while the client waits for a server (or for RESUME), for Wait so far.
	Waiting bool
	Wait    time.Duration

	// With WithConnections only:
	//
	// Addr and LocalAddr are the socket's ends as "host:port".
	Addr, LocalAddr string
	// ConnectTime is when the client connected; RequestTime when its last request began
	// (ConnectTime before the first).
	ConnectTime, RequestTime time.Time
	// CloseNeeded is set once the connection is being closed.
	CloseNeeded bool
	// ID is the client's id (SHOW CLIENTS' id, KILL_CLIENT's argument); Ptr names the
	// connection ("c" and ID in hex); Link is the Ptr of the server it holds, or "".
	ID        uint64
	Ptr, Link string
	// TLS is "version/cipher suite" for a TLS connection, else "".
	TLS             string
	ApplicationName string
	// PreparedStatements counts the client's prepared statements.
	PreparedStatements int
	// Pinned lists the session state that keeps the client's server past the
	// transaction ("advisory_lock", "temp_table", "with_hold_cursor"); nil if none.
	Pinned []string
}

// ServerConn is one server connection of a live pool.
type ServerConn struct {
	// User is the server login's user; Database the pool's database as clients name it.
	User, Database string
	// Active is set while a client holds the connection; Link is that client's Ptr.
	Active bool
	// Addr and LocalAddr are the socket's ends as "host:port".
	Addr, LocalAddr string
	ConnectTime     time.Time
	// CloseNeeded is set when the connection is to be closed once it comes back
	// (RECONNECT).
	CloseNeeded bool
	Ptr, Link   string
	// RemotePID is the server's process id.
	RemotePID uint32
	// PreparedStatements counts what the server has prepared of the shared statements.
	PreparedStatements int
}

// Database is one database clients can name, with the settings in force for it.
type Database struct {
	Name string
	// Host, Port and DBName are where its pools connect.
	Host   string
	Port   int
	DBName string
	// ForceUser is the user every login to it uses, or "".
	ForceUser             string
	PoolSize, MinPoolSize int
	Mode                  string
	Disabled              bool
	// ReservePool and MaxConnections are its reserve_pool and max_db_connections (0 is
	// none).
	ReservePool, MaxConnections int
}

// ConfigEntry is one row of SHOW CONFIG.
type ConfigEntry struct {
	Key, Value, Default string
	Changeable          bool
}

// ClientGroup counts the logged-in clients of one (database, user); console clients are
// counted under the console's name as both.
type ClientGroup struct {
	Database, User string
	// Active clients are not waiting; Waiting ones are, the oldest of them for MaxWait.
	Active, Waiting int
	MaxWait         time.Duration
}

// ClientGroups returns the logged-in clients by (database, user), sorted.
func (s *Snapshot) ClientGroups() []ClientGroup {
	type key struct{ database, user string }
	idx := make(map[key]int)
	var out []ClientGroup
	for i := range s.Clients {
		c := &s.Clients[i]
		if !c.LoggedIn {
			continue
		}
		k := key{c.Database, c.User}
		if c.Admin {
			k = key{DatabaseName, DatabaseName}
		}
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, ClientGroup{Database: k.database, User: k.user})
		}
		g := &out[j]
		if c.Waiting {
			g.Waiting++
			g.MaxWait = max(g.MaxWait, c.Wait)
		} else {
			g.Active++
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Database != out[j].Database {
			return out[i].Database < out[j].Database
		}
		return out[i].User < out[j].User
	})
	return out
}

// PoolGroup is what PgBouncer calls a pool: the live pools of one (database, user), one
// per backend, added up.
type PoolGroup struct {
	Database, User string
	Mode           string
	// Sums over the group's pools; see Pool.
	Active, Idle, Login                                       int
	CancelsWaiting, CancelsActive, CancelConns, BeingCanceled int
}

// PoolGroups returns the live pools grouped by (database, user), sorted.
func (s *Snapshot) PoolGroups() []PoolGroup {
	var out []PoolGroup
	for _, p := range s.Pools { // sorted by database and user
		if !p.Live {
			continue
		}
		if n := len(out); n == 0 || out[n-1].Database != p.Database || out[n-1].User != p.User {
			out = append(out, PoolGroup{Database: p.Database, User: p.User})
		}
		g := &out[len(out)-1]
		g.Mode = p.Mode
		g.Active += p.Active
		g.Idle += p.Idle
		g.Login += p.Login
		g.CancelsWaiting += p.CancelsWaiting
		g.CancelsActive += p.CancelsActive
		g.CancelConns += p.CancelConns
		g.BeingCanceled += p.BeingCanceled
	}
	return out
}

// TotalsByDatabase adds the pools' totals up by database.
func TotalsByDatabase(pools []Pool) map[string]Totals {
	out := make(map[string]Totals)
	for _, p := range pools {
		out[p.Database] = out[p.Database].Plus(p.Totals)
	}
	return out
}

// averages returns the averages of the last stats period, zero for every database with
// totals before the first period ends.
func (s *Snapshot) averages(totals map[string]Totals) map[string]Averages {
	if s.Averages != nil {
		return s.Averages
	}
	out := make(map[string]Averages, len(totals))
	for db := range totals {
		out[db] = Averages{}
	}
	return out
}

// covers reports whether new transactions of database wait for RESUME.
func (s *Snapshot) covers(database string) bool {
	if s.PausedAll {
		return true
	}
	for _, db := range s.Paused {
		if db == database {
			return true
		}
	}
	return false
}
