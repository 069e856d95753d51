package pool

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("pool: server closed")

// Server is a cmpool proxy. Create it with New, then call Serve or ListenAndServe.
type Server struct {
	cfg        Config                 // as given to New; see conf for the live one
	live       atomic.Pointer[Config] // the configuration in force, replaced by Reload
	log        *slog.Logger
	primaryCfg *pgconn.Config
	passwords  map[string]string             // plain-text passwords for server logins
	auth       atomic.Pointer[authenticator] // replaced by Reload
	clientTLS  atomic.Pointer[tls.Config]    // nil: client TLS is off
	stmts      *stmtRegistry

	// Routing: nil replicas means none are configured.
	replicaCfgs           []*pgconn.Config
	replicaSet            atomic.Pointer[router.ReplicaSet] // nil: none; replaced by Reload
	classifier            *router.Classifier
	volatile              sync.Map      // database + "\x00" + function -> bool (volatile)
	funcSettings          sync.Map      // database + "\x00" + function -> funcSettings
	lastWriteNS           atomic.Int64  // when a write last committed, in ns since started (consistency = global); 0 if never
	routedPrimaryFallback atomic.Int64  // reads sent to the primary for want of a usable replica
	readOnlyReplays       atomic.Int64  // requests a replica refused with 25006, replayed on the primary
	primaryGen            atomic.Uint64 // counts promotions followed; see poolAt
	promotions            atomic.Int64
	readWaits             atomic.Int64 // reads that waited for a replica to replay their writes
	routedPrimary         atomic.Int64 // transactions sent to the primary while replicas are configured
	errors                errorCounts
	observer              Observer // never nil
	started               time.Time

	// pauses holds PAUSE and KILL state; nil while nothing is paused.
	pauses atomic.Pointer[pauseState]
	// welcomes keeps, per welcomeKey, the parameters a server reported at the latest
	// login (map[string]string, not changed once stored): a login during a PAUSE uses
	// them instead of a server.
	welcomes sync.Map
	// closingPools holds the pools a reload or a promotion replaced until they are closed
	// (*backendPool -> struct{}), for WAIT_CLOSE.
	closingPools sync.Map
	// disabled holds the databases DISABLE refuses new logins to (see setDisabled).
	disabled  atomic.Pointer[map[string]bool]
	retired   atomic.Pointer[retiredTotals]
	averages  atomic.Pointer[map[string]averages]
	reloadMu  sync.Mutex // serializes Reload
	readiness readyCache
	startOnce sync.Once

	mu        sync.Mutex
	pools     map[poolKey]*backendPool
	listeners map[net.Listener]struct{}
	clients   map[uint32]*clientSession // by cancel key pid

	nClients atomic.Int64
	closing  atomic.Bool
	wg       sync.WaitGroup
	// ctx is cancelled when Shutdown gives up waiting; it ends every wait for a server.
	ctx    context.Context
	cancel context.CancelFunc
}

// cancelKey is the BackendKeyData cmpool gives a client.
type cancelKey struct {
	pid    uint32
	secret [4]byte
}

// New validates cfg, fills in defaults and returns a Server that is not yet serving.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ParseConfig(c.Primary)
	if err != nil {
		return nil, fmt.Errorf("pool: primary: %w", err)
	}
	s := &Server{
		cfg:        c,
		log:        c.Logger,
		primaryCfg: pc,
		pools:      make(map[poolKey]*backendPool),
		listeners:  make(map[net.Listener]struct{}),
		clients:    make(map[uint32]*clientSession),
		stmts:      newStmtRegistry(),
		observer:   c.Observer,
		started:    time.Now(),
	}
	if s.observer == nil {
		s.observer = ObserverFunc(func(Event) {})
	}
	s.live.Store(&c)
	s.retired.Store(&retiredTotals{})
	var secrets map[string]string
	if c.AuthFile != "" {
		secrets, err = readAuthFile(c.AuthFile)
		if err != nil {
			return nil, err
		}
	}
	target := func(database string) (*pgconn.Config, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if database == "" {
			return s.primaryCfg, nil
		}
		return s.databaseTargetLocked(database)
	}
	a, err := newAuthenticator(s.conf(), target, secrets)
	if err != nil {
		return nil, err
	}
	s.auth.Store(a)
	s.passwords = serverPasswords(a, secrets, c.Users)
	tc, err := loadClientTLS(&s.cfg)
	if err != nil {
		return nil, err
	}
	s.clientTLS.Store(tc)
	s.classifier = router.NewClassifier(0)
	s.stmts.classifier = s.classifier
	if len(c.Replicas) > 0 {
		for i, u := range c.Replicas {
			rc, err := pgconn.ParseConfig(u)
			if err != nil {
				return nil, fmt.Errorf("pool: replica %d: %w", i, err)
			}
			s.replicaCfgs = append(s.replicaCfgs, rc)
		}
		rs, err := s.newReplicaSet(&c)
		if err != nil {
			return nil, err
		}
		s.replicaSet.Store(rs)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// rs returns the replica set in force, or nil without replicas.
func (s *Server) rs() *router.ReplicaSet { return s.replicaSet.Load() }

// newReplicaSet makes the replica set for c's replicas, not yet started.
func (s *Server) newReplicaSet(c *Config) (*router.ReplicaSet, error) {
	var rs *router.ReplicaSet
	rs, err := router.NewReplicaSet(router.ReplicaSetConfig{
		Primary:       c.Primary,
		Replicas:      c.Replicas,
		CheckInterval: c.ReplicaCheckInterval,
		MaxLagBytes:   c.MaxReplicaLagBytes,
		MaxLagTime:    c.MaxReplicaLag,
		BanTime:       c.ReplicaBanTime,
		Balance:       router.Balance(c.Balance),
		Logger:        c.Logger,
		OnPromotion: func(i int) {
			if s.rs() == rs {
				s.followPromotion(i)
			}
		},
	})
	return rs, err
}

// conf returns the configuration in force.
func (s *Server) conf() *Config { return s.live.Load() }

// ListenAndServe listens on Config.Listen and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := Listen(context.Background(), s.cfg.Listen, s.cfg.ReusePort)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve accepts client connections on ln until Shutdown, then returns ErrServerClosed.
// Serve closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.startOnce.Do(func() {
		if rs := s.rs(); rs != nil {
			rs.Start()
		}
		go s.statsSampler()
	})
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()
	s.log.Info("listening", "addr", ln.Addr().String(), "pool_mode", string(s.conf().PoolMode))
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.wg.Go(func() { s.serveConn(conn) })
	}
}

// DialContext connects to the proxy in-process, without TCP: the returned connection is
// served like an accepted one. Its signature fits pgconn.Config.DialFunc, so a Go program
// can use an embedded cmpool through pgx; network and address are ignored.
func (s *Server) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closing.Load() {
		return nil, ErrServerClosed
	}
	client, server := net.Pipe()
	s.wg.Go(func() { s.serveConn(server) })
	return client, nil
}

// serveConn runs one client connection.
func (s *Server) serveConn(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	s.nClients.Add(1)
	fio := fastIO(conn)
	r := newClientReader(fio)
	c := &clientSession{
		srv:         s,
		conn:        conn,
		r:           r,
		fr:          protocol.NewFrameReader(r, s.conf().MaxPacketSize),
		w:           newClientWriter(fio),
		log:         s.log.With("client", conn.RemoteAddr().String()),
		stmts:       make(map[string]*preparedStmt),
		connectedAt: time.Now(),
	}
	c.idle = sync.NewCond(&c.mu)
	s.registerClient(c)
	c.serve(s.ctx)
}

// overClientLimit reports whether this client is past max_client_conn.
func (s *Server) overClientLimit() bool {
	return s.nClients.Load() > int64(s.conf().MaxClientConn)
}

// registerClient gives c a unique cancel key.
func (s *Server) registerClient(c *clientSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		pid := s.newCancelPID()
		if _, used := s.clients[pid]; used || pid == 0 {
			continue
		}
		c.key.pid = pid
		_, _ = rand.Read(c.key.secret[:])
		s.clients[pid] = c
		return
	}
}

func (s *Server) forgetClient(c *clientSession) {
	s.mu.Lock()
	if s.clients[c.key.pid] == c {
		delete(s.clients, c.key.pid)
	}
	s.mu.Unlock()
	s.nClients.Add(-1)
}

// handleCancel forwards a client's CancelRequest to the server that client holds right
// now, if any, and nowhere else.
func (s *Server) handleCancel(ctx context.Context, req *pgproto3.CancelRequest) {
	if peer := s.peerOf(req.ProcessID); peer != "" {
		s.forwardCancel(ctx, peer, req)
		return
	}
	s.mu.Lock()
	c := s.clients[req.ProcessID]
	s.mu.Unlock()
	if c == nil || subtle.ConstantTimeCompare(c.key.secret[:], req.SecretKey) != 1 {
		s.log.Debug("cancel request for unknown client", "pid", req.ProcessID)
		return
	}
	c.mu.Lock()
	l := c.lease
	if l != nil {
		l.cancels.Add(1)
	}
	c.mu.Unlock()
	if l == nil {
		return // nothing running: nothing to cancel
	}
	defer l.cancels.Done()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.sc.cancel(cctx); err != nil {
		s.log.Warn("cancel request failed", "error", err)
	}
}

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
		func() *passthroughKeys { return s.authn().passthroughFor(serverUser) })
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

// Shutdown stops accepting clients and asks each to leave at its next transaction
// boundary. It waits for them until ctx ends, then closes the rest, and closes every
// server connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		_ = ln.Close()
	}
	clients := make([]*clientSession, 0, len(s.clients))
	for _, c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	for _, c := range clients {
		c.requestClose()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		s.mu.Lock()
		for _, c := range s.clients {
			_ = c.conn.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.cancel()
	s.mu.Lock()
	pools := make([]*backendPool, 0, len(s.pools))
	for _, bp := range s.pools {
		pools = append(pools, bp)
	}
	s.mu.Unlock()
	for _, bp := range pools {
		bp.close()
	}
	if s.rs() != nil {
		s.rs().Close()
	}
	return err
}

// requestClose asks the client to leave at its next transaction boundary: now, if it
// holds no server.
func (c *clientSession) requestClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A client idle for less than drainGrace (one that has just logged in, or just ended a
	// transaction and is about to send the next) gets until then to start a transaction,
	// which then completes before it is closed.
	now := nanotime()
	closeAt := now
	if since := c.idleSince.Load(); since == 0 {
		closeAt = now + int64(drainGrace) // still logging in
	} else if now-since < int64(drainGrace) {
		closeAt = since + int64(drainGrace)
	}
	c.closeAt.Store(closeAt)
	c.closing.Store(true)
	l := c.lease
	// A syncing lease is ending cleanly, and its relay is using the server (txStatus is
	// the relay's until then).
	if l == nil || l.syncing || l.pending == 0 && !l.unsynced && l.sc.txStatus == 'I' {
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Duration(closeAt - now)))
	}
}

// drainGrace is how long a draining cmpool still serves a client that has just connected
// or just finished a transaction, before closing it (see requestClose).
const drainGrace = time.Second

// readyCache remembers the last readiness probe of the primary for a second, so that
// frequent probes cost at most one server login per second.
type readyCache struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// Ready reports whether the server can take clients: it returns ErrServerClosed once
// Shutdown has begun, or the error of a login to the primary when that fails. For
// readiness probes (cmd/cmpool's /readyz).
func (s *Server) Ready(ctx context.Context) error {
	if s.closing.Load() {
		return ErrServerClosed
	}
	s.readiness.mu.Lock()
	defer s.readiness.mu.Unlock()
	if time.Since(s.readiness.at) < time.Second {
		return s.readiness.err
	}
	s.mu.Lock()
	cfg := s.primaryCfg.Copy()
	s.mu.Unlock()
	cfg.RuntimeParams["application_name"] = "cmpool readiness"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		err = conn.Close(ctx)
	}
	if err != nil {
		err = fmt.Errorf("primary unreachable: %w", err)
	}
	s.readiness.at, s.readiness.err = time.Now(), err
	return err
}

// authn returns the authenticator in force.
func (s *Server) authn() *authenticator { return s.auth.Load() }

// serverPasswords returns the cleartext passwords known for server logins, from the auth
// file's secrets and the [users] entries.
func serverPasswords(a *authenticator, fileSecrets map[string]string, users map[string]User) map[string]string {
	out := make(map[string]string)
	for u := range maps.Keys(fileSecrets) {
		if p, ok := a.plainPassword(u); ok {
			out[u] = p
		}
	}
	for u := range users {
		if p, ok := a.plainPassword(u); ok {
			out[u] = p
		}
	}
	return out
}

// noteWrite records that a transaction that may have written committed at t.
func (s *Server) noteWrite(t time.Time) {
	ns := int64(t.Sub(s.started))
	for {
		old := s.lastWriteNS.Load()
		if ns <= old || s.lastWriteNS.CompareAndSwap(old, ns) {
			return
		}
	}
}

// lastWrite returns when a transaction that may have written last committed; zero if never.
func (s *Server) lastWrite() time.Time {
	ns := s.lastWriteNS.Load()
	if ns == 0 {
		return time.Time{}
	}
	return s.started.Add(time.Duration(ns))
}
