package pool

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"sort"
	"time"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/lease"
)

// snapshot takes the one snapshot of the server that the console shows and Stat
// reports; parts selects what it holds beyond what it always holds (see admin.Parts).
func (s *Server) snapshot(parts admin.Parts) *admin.Snapshot {
	cfg := s.conf()
	live := s.poolsOf("")
	snap := &admin.Snapshot{
		Pools:        s.poolSnapshot(live),
		Peers:        cfg.Peers,
		ShuttingDown: s.closing.Load() || s.stopping.Load() != nil,
		Uptime:       time.Since(s.started),
		Now:          time.Now(),
	}
	if rs := s.rs(); rs != nil {
		snap.Replicas, snap.Primary = rs.Snapshot(), rs.PrimaryStatus()
	}
	if p := s.averages.Load(); p != nil {
		snap.Averages = *p
	}
	if p := s.pauses.Load(); p != nil {
		snap.PausedAll = p.all
		for db := range p.dbs {
			snap.Paused = append(snap.Paused, db)
		}
		sort.Strings(snap.Paused)
	}
	snap.Clients = s.clientSnapshot(parts&admin.WithConnections != 0)
	if parts&admin.WithConnections != 0 {
		snap.Servers = serverSnapshot(live)
	}
	if parts&admin.WithDatabases != 0 {
		snap.Databases = s.databaseSnapshot(cfg, live)
	}
	if parts&admin.WithConfig != 0 {
		snap.Config = s.configEntries()
	}
	return snap
}

// totals returns bp's counters.
func (bp *backendPool) totals() admin.Totals {
	pc := &bp.Counters
	return admin.Totals{
		Xacts: pc.Xacts.Load(), Queries: pc.Queries.Load(), Assignments: bp.Stat().Acquires,
		Waits: pc.Waits.Load(), Received: pc.Received.Load(), Sent: pc.Sent.Load(),
		XactTime: pc.XactTime.Load(), QueryTime: pc.QueryTime.Load(), WaitTime: pc.WaitTime.Load(),
		ClientParses: pc.Stmt.ClientParses.Load(), ServerParses: pc.Stmt.ServerParses.Load(), Binds: pc.Stmt.Binds.Load(),
	}
}

// poolSnapshot returns one entry per pool key: the live pools, and the pools replaced by
// a reload or a promotion, whose totals are added to those of their key. Sorted by
// database, user and backend.
func (s *Server) poolSnapshot(live []*backendPool) []admin.Pool {
	byKey := make(map[poolKey]*admin.Pool)
	entry := func(key poolKey) *admin.Pool {
		p := byKey[key]
		if p == nil {
			p = &admin.Pool{Database: key.database, User: key.user, Backend: "primary"}
			if key.backend != backendPrimary {
				p.Backend = fmt.Sprintf("replica %d", key.backend-1)
			}
			byKey[key] = p
		}
		return p
	}
	for key, t := range s.retired.Load().byKey {
		entry(key).Totals = t
	}
	for _, bp := range live {
		p := entry(bp.key)
		p.Totals = p.Totals.Plus(bp.totals())
		st := bp.Stat()
		p.Live, p.Backend, p.Mode = true, bp.Name, string(bp.mode)
		p.Servers, p.Idle, p.Active = st.Total, st.Idle, st.Acquired
		p.Login, p.Max = st.Constructing, st.Max
		p.CancelsWaiting, p.CancelsActive, p.CancelConns = bp.Cancels.Snapshot()
		p.BeingCanceled = bp.BeingCanceled()
	}
	out := make([]admin.Pool, 0, len(byKey))
	for _, p := range byKey {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.Database != b.Database {
			return a.Database < b.Database
		}
		if a.User != b.User {
			return a.User < b.User
		}
		return a.Backend < b.Backend
	})
	return out
}

// totalsByDatabase adds the totals of every pool, live or replaced, up by database.
func (s *Server) totalsByDatabase() map[string]admin.Totals {
	return admin.TotalsByDatabase(s.poolSnapshot(s.poolsOf("")))
}

// clientPtr names a client session by its id, as SHOW CLIENTS' ptr and SHOW SERVERS' link.
func clientPtr(id uint64) string        { return fmt.Sprintf("c%x", id) }
func serverPtr(sc *backend.Conn) string { return fmt.Sprintf("s%p", sc) }

// clientSnapshot describes every client connection; details adds what SHOW CLIENTS
// shows beyond the counts.
func (s *Server) clientSnapshot(details bool) []admin.Client {
	conns := s.clientsOf("")
	out := make([]admin.Client, 0, len(conns))
	now := lease.Nanotime()
	for _, c := range conns {
		// What startup writes (user, database, parameters) is read only once the login
		// is complete: loggedIn is set after it.
		in := c.loggedIn.Load()
		cl := admin.Client{LoggedIn: in}
		if since := c.waitingSince.Load(); since != 0 {
			cl.Waiting, cl.Wait = true, time.Duration(now-since)
		}
		if in {
			cl.Admin, cl.User, cl.Database = c.admin, c.User, c.Database
			if c.admin {
				cl.Database = AdminDatabase
			}
		}
		if details {
			if in {
				c.Mu.Lock()
				if c.Lease != nil {
					cl.Link = serverPtr(c.Lease.Server())
				}
				cl.ApplicationName = c.Settings.Value("application_name")
				cl.PreparedStatements = c.Stmts.Len()
				cl.Pinned = c.PinnedLocked()
				c.Mu.Unlock()
				if c.Conn.TLS != nil {
					st := c.Conn.TLS.ConnectionState()
					cl.TLS = tls.VersionName(st.Version) + "/" + tls.CipherSuiteName(st.CipherSuite)
				}
			}
			cl.Addr, cl.LocalAddr = c.Conn.Net.RemoteAddr().String(), c.Conn.Net.LocalAddr().String()
			cl.ConnectTime = time.Unix(0, c.connectedAt)
			cl.RequestTime = cl.ConnectTime
			if r := c.requestAt.Load(); r != 0 {
				cl.RequestTime = lease.WallTime(r)
			}
			cl.CloseNeeded = c.Closing.Load()
			cl.ID, cl.Ptr = c.ID, clientPtr(c.ID)
		}
		out = append(out, cl)
	}
	return out
}

// serverSnapshot describes every server connection of the live pools.
func serverSnapshot(live []*backendPool) []admin.ServerConn {
	var out []admin.ServerConn
	for _, bp := range live {
		for sc := range bp.Conns() {
			srv := admin.ServerConn{
				User: bp.ConnConfig.User, Database: bp.key.database,
				Addr: sc.NetConn.RemoteAddr().String(), LocalAddr: sc.NetConn.LocalAddr().String(),
				ConnectTime: sc.CreatedAt, CloseNeeded: bp.CloseNeeded(sc),
				Ptr: serverPtr(sc), RemotePID: sc.PID, PreparedStatements: sc.Prepared.Len(),
			}
			if id := sc.Linked.Load(); id != 0 {
				srv.Active, srv.Link = true, clientPtr(id)
			}
			out = append(out, srv)
		}
	}
	return out
}

// databaseSnapshot describes the configured databases and those with a live pool.
func (s *Server) databaseSnapshot(cfg *Config, live []*backendPool) []admin.Database {
	s.mu.Lock()
	primary := s.primaryCfg
	s.mu.Unlock()
	names := make(map[string]bool)
	for _, bp := range live {
		names[bp.key.database] = true
	}
	for name := range cfg.Databases {
		names[name] = true
	}
	disabled := s.disabledDBs()
	out := make([]admin.Database, 0, len(names))
	for name := range names {
		db := cfg.Databases[name]
		d := admin.Database{Name: name, Host: primary.Host, Port: int(primary.Port), DBName: name, ForceUser: db.User,
			PoolSize: cfg.DefaultPoolSize, MinPoolSize: cfg.MinPoolSize, Mode: string(cfg.PoolMode), Disabled: disabled[name]}
		if db.URL != "" {
			if pc, err := parseConnString(db.URL); err == nil {
				d.Host, d.Port, d.DBName = pc.Host, int(pc.Port), pc.Database
			}
		}
		if db.DBName != "" {
			d.DBName = db.DBName
		}
		if db.PoolSize > 0 {
			d.PoolSize = db.PoolSize
		}
		if db.PoolMode != "" {
			d.Mode = string(db.PoolMode)
		}
		d.MinPoolSize, d.ReservePool, d.MaxConnections = cmp.Or(db.MinPoolSize, d.MinPoolSize),
			cmp.Or(db.ReservePool, cfg.ReservePoolSize), cmp.Or(db.MaxDBConnections, cfg.MaxDBConnections)
		out = append(out, d)
	}
	return out
}
