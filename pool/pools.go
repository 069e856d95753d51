package pool

import (
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/limit"
	"github.com/cmlite/cmpool/pool/internal/netopt"
)

// poolFor returns the pool of connections to a backend (backendPrimary, or replica i as
// i+1) for a client's database and user.
func (s *Server) poolFor(database, user string, which int) (*backendPool, error) {
	key := poolKey{database: database, user: user, backend: which}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bp := s.pools[key]; bp != nil {
		return bp, nil
	}
	if s.closing.Load() {
		return nil, ErrServerClosed
	}
	db := s.conf().Databases[database]
	var cc *pgconn.Config
	if which > backendPrimary {
		if which > len(s.replicaCfgs) {
			return nil, fmt.Errorf("pool: no replica %d", which)
		}
		cc = s.replicaCfgs[which-1].Copy()
		cc.Database = database
		if db.DBName != "" {
			cc.Database = db.DBName
		}
	} else {
		var err error
		if cc, err = s.databaseTargetLocked(database); err != nil {
			return nil, err
		}
	}
	serverUser := user
	if db.User != "" {
		serverUser = db.User
	}
	if serverUser != cc.User {
		cc.Password = "" // the URL's password belongs to the URL's user
	}
	cc.User = serverUser
	if p, ok := s.passwords[serverUser]; ok {
		cc.Password = p
	}
	if db.Password != "" {
		cc.Password = db.Password
	}
	cc.ConnectTimeout = s.conf().ServerConnectTimeout
	cc.DialFunc = s.conf().keepalive().Dialer(cc.ConnectTimeout)
	cc.RuntimeParams = maps.Clone(cc.RuntimeParams)
	for k, v := range map[string]string{"client_encoding": db.ClientEncoding, "DateStyle": db.DateStyle, "TimeZone": db.TimeZone} {
		if v != "" {
			if cc.RuntimeParams == nil {
				cc.RuntimeParams = make(map[string]string)
			}
			cc.RuntimeParams[k] = v
		}
	}
	size := s.conf().DefaultPoolSize
	if db.PoolSize > 0 {
		size = db.PoolSize
	}
	mode := s.conf().PoolMode
	if db.PoolMode != "" {
		mode = db.PoolMode
	}
	if m := s.conf().Users[user].PoolMode; m != "" {
		mode = m // the user's pool_mode wins, as in PgBouncer
	}
	cfg := s.conf()
	minSize := cfg.MinPoolSize
	if db.MinPoolSize > 0 {
		minSize = db.MinPoolSize
	}
	maxDB, maxUser := cfg.MaxDBConnections, cfg.MaxUserConnections
	if db.MaxDBConnections > 0 {
		maxDB = db.MaxDBConnections
	}
	if u := cfg.Users[serverUser]; u.MaxUserConnections > 0 {
		maxUser = u.MaxUserConnections
	}
	reserve := cfg.ReservePoolSize
	if db.ReservePool > 0 {
		reserve = db.ReservePool
	}
	loginRetry := cfg.ServerLoginRetry
	if which > backendPrimary {
		loginRetry = 0 // a failing replica is banned instead (replica_ban_time)
	}
	checkDelay := cfg.ServerCheckDelay
	if cfg.ServerCheckQuery == "-" {
		checkDelay = 0
	}
	bp, err := newBackendPool(key, mode, backend.PoolConfig{
		ConnConfig:     cc,
		Size:           size,
		MinSize:        minSize,
		IdleTimeout:    cfg.ServerIdleTimeout,
		Lifetime:       cfg.ServerLifetime,
		ConnectTimeout: cfg.ServerConnectTimeout,
		MaxPrepared:    cfg.MaxPreparedStatements,
		Passthrough:    func() *passthroughKeys { return s.authn().PassthroughFor(serverUser) },
		Limits: []*limit.Limit{
			s.limits.Get(limit.Key{Kind: "database", Name: database, Backend: which, Max: maxDB}),
			s.limits.Get(limit.Key{Kind: "user", Name: serverUser, Backend: which, Max: maxUser}),
		},
		LimitWait:      cfg.QueryWaitTimeout,
		Reserve:        reserve,
		ReserveTimeout: cfg.ReservePoolTimeout,
		CheckQuery:     cfg.ServerCheckQuery,
		CheckDelay:     checkDelay,
		RoundRobin:     cfg.ServerRoundRobin,
		LoginRetry:     loginRetry,
		Claims:         s.loops != nil,
	})
	if err != nil {
		return nil, err
	}
	s.pools[key] = bp
	return bp, nil
}

// keepalive is c's TCP keepalive settings, for client and server sockets.
func (c *Config) keepalive() netopt.Keepalive {
	return netopt.Keepalive{Off: c.TCPKeepaliveOff, Idle: c.TCPKeepIdle, Interval: c.TCPKeepIntvl,
		Count: c.TCPKeepCnt, UserTimeout: c.TCPUserTimeout}
}

// databaseTargetLocked returns the connection settings of a client-visible database name
// on the primary: its Databases entry's server and database name, else the primary with
// that database name. User and password are still the URL's. Called with s.mu held.
func (s *Server) databaseTargetLocked(database string) (*pgconn.Config, error) {
	db := s.conf().Databases[database]
	base := s.primaryCfg
	if db.URL != "" {
		var err error
		if base, err = pgconn.ParseConfig(db.URL); err != nil {
			return nil, err
		}
	}
	cc := base.Copy()
	switch {
	case db.DBName != "":
		cc.Database = db.DBName
	case db.URL == "":
		cc.Database = database
	}
	return cc, nil
}

// followPromotion makes replica index the primary: another tool promoted it (it reports
// pg_is_in_recovery() = false). Pools of the old primary are closed; clients find the new
// one at their next transaction.
func (s *Server) followPromotion(index int) {
	s.mu.Lock()
	if s.closing.Load() || index >= len(s.replicaCfgs) {
		s.mu.Unlock()
		return
	}
	newPrimary := s.replicaCfgs[index]
	s.log.Warn("a replica was promoted: it is now the primary", "host", newPrimary.Host, "port", newPrimary.Port)
	s.primaryCfg = newPrimary
	old := s.retirePoolsLocked(func(key poolKey) bool { return key.backend == backendPrimary })
	s.primaryGen.Add(1)
	s.mu.Unlock()
	s.promotions.Add(1)
	s.closeRetired(old)
}

// retiredTotals keeps the counters of pools that were replaced (by a reload or a
// promotion), so that totals never go backwards.
type retiredTotals struct {
	byKey map[poolKey]admin.Totals
}

// retirePoolsLocked takes the pools whose key matches out of s.pools, so that new
// transactions make new ones, and adds their counters to the retired totals. The caller
// holds s.mu, and closes the pools returned with closeRetired once it has let go of it.
func (s *Server) retirePoolsLocked(match func(poolKey) bool) []*backendPool {
	var pools []*backendPool
	for key, bp := range s.pools {
		if match(key) {
			pools = append(pools, bp)
			delete(s.pools, key)
		}
	}
	if len(pools) == 0 {
		return nil
	}
	cur := s.retired.Load()
	next := &retiredTotals{byKey: maps.Clone(cur.byKey)}
	if next.byKey == nil {
		next.byKey = make(map[poolKey]admin.Totals)
	}
	for _, bp := range pools {
		next.byKey[bp.key] = next.byKey[bp.key].Plus(bp.totals())
	}
	s.retired.Store(next)
	return pools
}

// closeRetired closes pools a reload or a promotion replaced, in the background: each
// waits for its connections in use to come back. WAIT_CLOSE waits for them.
func (s *Server) closeRetired(pools []*backendPool) {
	for _, bp := range pools {
		s.closingPools.Store(bp, struct{}{})
		go func() {
			bp.Close()
			s.closingPools.Delete(bp)
		}()
	}
}

// poolsOf returns the pools serving database, or every pool for "".
func (s *Server) poolsOf(database string) []*backendPool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*backendPool, 0, len(s.pools))
	for key, bp := range s.pools {
		if database == "" || key.database == database {
			out = append(out, bp)
		}
	}
	return out
}
