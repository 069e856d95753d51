package pool

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// poolFor returns the pool of connections to a backend (backendPrimary, or replica i as
// i+1) for a client's database and user.
func (s *Server) poolFor(database, user string, backend int) (*backendPool, error) {
	key := poolKey{database: database, user: user, backend: backend}
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
	if backend > backendPrimary {
		if backend > len(s.replicaCfgs) {
			return nil, fmt.Errorf("pool: no replica %d", backend)
		}
		cc = s.replicaCfgs[backend-1].Copy()
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
	size := s.conf().DefaultPoolSize
	if db.PoolSize > 0 {
		size = db.PoolSize
	}
	mode := s.conf().PoolMode
	if db.PoolMode != "" {
		mode = db.PoolMode
	}
	cfg := s.conf()
	bp, err := newBackendPool(key, mode, cc, size, cfg.MinPoolSize, cfg.MaxPreparedStatements, cfg.ServerIdleTimeout, cfg.ServerLifetime, cfg.ServerConnectTimeout,
		func() *passthroughKeys { return s.authn().PassthroughFor(serverUser) })
	if err != nil {
		return nil, err
	}
	s.pools[key] = bp
	return bp, nil
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
