package pool

import (
	"context"
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

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/limit"
	"github.com/cmlite/cmpool/pool/internal/notify"
	"github.com/cmlite/cmpool/pool/internal/park"
	"github.com/cmlite/cmpool/pool/internal/peer"
	"github.com/cmlite/cmpool/pool/internal/reactor"
	"github.com/cmlite/cmpool/pool/internal/stmt"
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
	stmts      *stmt.Registry

	// Routing: nil replicas means none are configured.
	replicaCfgs           []*pgconn.Config
	replicaSet            atomic.Pointer[router.ReplicaSet] // nil: none; replaced by Reload
	classifier            *router.Classifier
	volatile              funcVolatility
	funcSettings          sync.Map      // database + "\x00" + function -> funcSettings
	lastWriteNS           atomic.Int64  // when a write last committed, in ns since started (consistency = global); 0 if never
	routedPrimaryFallback atomic.Int64  // reads sent to the primary for want of a usable replica
	readOnlyReplays       atomic.Int64  // requests a replica refused with 25006, replayed on the primary
	readReplays           atomic.Int64  // reads replayed elsewhere after their replica failed
	primaryGen            atomic.Uint64 // counts promotions followed; see clientPools.at
	promotions            atomic.Int64
	readWaits             atomic.Int64 // reads that waited for a replica to replay their writes
	readsNotWaited        atomic.Int64 // reads sent to the primary at once: their writes could not reach a replica yet
	scopes                writeScopes  // the last writes shared by clients (see router.ScopeKey)
	peerLinks             peer.Links   // connections that tell the peers of writes
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
	// startupParams shares the startup parameters of clients that sent the same ones
	// (sharedparams.go).
	startupParams sharedParams
	// closingPools holds the pools a reload or a promotion replaced until they are closed
	// (*backendPool -> struct{}), for WAIT_CLOSE.
	closingPools sync.Map
	// pinGroups counts the pinned clients of each pool (pinKey -> *lease.PinGroup).
	pinGroups sync.Map
	// disabled holds the databases DISABLE refuses new logins to (see setDisabled).
	disabled  atomic.Pointer[map[string]bool]
	retired   atomic.Pointer[retiredTotals]
	averages  atomic.Pointer[map[string]admin.Averages]
	reloadMu  sync.Mutex // serializes Reload
	readiness readyCache
	startOnce sync.Once
	serving   atomic.Bool // set once start has run

	// mu guards pools, listeners, clients and primaryCfg. It is held only to read or
	// change them: never across I/O, a wait or a hook, and no client's lock
	// (clientSession.mu, wmu, lease.wmu) is taken while it is held.
	mu        sync.Mutex
	pools     map[poolKey]*backendPool
	limits    limit.Registry // max_db_connections and max_user_connections
	xactWatch sync.Once      // starts watchTransactions with the first client
	parkWatch sync.Once      // starts parkIdle with the first client
	parker    *park.Set      // idle clients' sockets (park.go); nil when parking is off
	loops     *reactor.Set   // the event loops (loops.go); nil when off
	loopIdle  atomic.Int64   // clients suspended between requests on the loops
	parkAsks  atomic.Uint64  // clients the sweeper asked to park (parkIdle)
	// claimWaits, claimHanded and claimOther are EventLoopStat's ServerWaits,
	// ServerWaitsHanded and ServerWaitsOther.
	claimWaits, claimHanded, claimOther atomic.Uint64
	listeners                           map[net.Listener]struct{}
	// conns holds every client connection served, from accept to close; clients holds
	// those that logged in, by cancel key pid (a key is given at the end of a login).
	conns   map[*clientSession]struct{}
	clients map[uint32]*clientSession

	// lastClientID is the id of the latest client session; ids start at 1.
	lastClientID atomic.Uint64

	nClients atomic.Int64
	closing  atomic.Bool
	// noAccept is set by SHUTDOWN WAIT_FOR_CLIENTS: the listeners are closed, and the
	// clients connected are served until they leave (see console.go).
	noAccept atomic.Bool
	// stopping is the shutdown the admin console began, or nil; Serve returns only once
	// it is over.
	stopping atomic.Pointer[consoleShutdown]
	// waiting is set, under mu, once Shutdown waits for wg: from then on no connection
	// joins it (see serveConn).
	waiting bool
	wg      sync.WaitGroup
	// ctx is cancelled when Shutdown gives up waiting; it ends every wait for a server.
	ctx    context.Context
	cancel context.CancelFunc

	// Test seams, set only from tests: cancelPIDBits (0: peerIDShift) narrows the random
	// low bits of a peered cancel key's process id; relayFault runs before each server
	// message the relay handles, clientFault before each client message after login.
	cancelPIDBits uint
	relayFault    func(typ byte)
	clientFault   func(typ byte)

	// notify holds the LISTEN connections of clients in transaction and statement modes.
	notify *notify.Hub
}

// New validates cfg, fills in defaults and returns a Server that is not yet serving.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pc, replicaCfgs, err := parseBackends(&c)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         c,
		log:         c.Logger,
		primaryCfg:  pc,
		replicaCfgs: replicaCfgs,
		pools:       make(map[poolKey]*backendPool),
		listeners:   make(map[net.Listener]struct{}),
		conns:       make(map[*clientSession]struct{}),
		clients:     make(map[uint32]*clientSession),
		stmts:       stmt.NewRegistry(),
		observer:    c.Observer,
		started:     time.Now(),
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
	s.stmts.Judge = lease.StatementJudge(s.classifier)
	if len(c.Replicas) > 0 {
		rs, err := s.newReplicaSet(&c)
		if err != nil {
			return nil, err
		}
		s.replicaSet.Store(rs)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.notify = notify.NewHub(s.ctx, s.log)
	s.loops = s.newLoops(c.EventLoops)
	if c.ParkIdleAfter >= 0 {
		if s.parker, err = park.New(); err != nil {
			s.log.Debug("idle clients keep their goroutines", "error", err)
			s.parker = nil
		}
	}
	return s, nil
}

// parseBackends parses the connection strings of c's primary and replicas.
func parseBackends(c *Config) (primary *pgconn.Config, replicas []*pgconn.Config, err error) {
	primary, err = pgconn.ParseConfig(c.Primary)
	if err != nil {
		return nil, nil, fmt.Errorf("pool: primary: %w", err)
	}
	for i, u := range c.Replicas {
		rc, err := pgconn.ParseConfig(u)
		if err != nil {
			return nil, nil, fmt.Errorf("pool: replica %d: %w", i, err)
		}
		replicas = append(replicas, rc)
	}
	return primary, replicas, nil
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
// Serve closes ln. After a SHUTDOWN from the admin console, Serve returns once that
// shutdown is over.
func (s *Server) Serve(ln net.Listener) error {
	err := s.acceptLoop(ln)
	if cs := s.stopping.Load(); cs != nil && errors.Is(err, ErrServerClosed) {
		<-cs.done
	}
	return err
}

// acceptLoop is Serve until its listener closes.
func (s *Server) acceptLoop(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() || s.noAccept.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	// Serve holds a place in s.wg until it returns, so that every connection it accepted,
	// even as Shutdown began, joins s.wg and is served (see serveConn).
	s.wg.Add(1)
	s.mu.Unlock()
	s.start()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		_ = ln.Close()
		s.wg.Done()
	}()
	s.log.Info("listening", "addr", ln.Addr().String(), "pool_mode", string(s.conf().PoolMode))
	s.warnTrust(ln.Addr())
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.closing.Load() || s.noAccept.Load() {
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
		s.serveConn(conn, true)
	}
}

// start starts the replica monitor and the stats sampler, once, when the server first
// serves: through Serve or DialContext.
func (s *Server) start() {
	s.startOnce.Do(func() {
		if rs := s.rs(); rs != nil {
			rs.Start()
		}
		go s.statsSampler()
		s.serving.Store(true)
	})
}

// DialContext connects to the proxy in-process, without TCP: the returned connection is
// served like an accepted one. Its signature fits pgconn.Config.DialFunc, so a Go program
// can use an embedded cmpool through pgx; network and address are ignored.
func (s *Server) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closing.Load() || s.noAccept.Load() {
		return nil, ErrServerClosed
	}
	s.start()
	client, server := net.Pipe()
	if !s.serveConn(server, false) {
		_ = server.Close()
		_ = client.Close()
		return nil, ErrServerClosed
	}
	return client, nil
}

// serveConn serves one client connection on a goroutine of its own. A connection
// accepted just as Shutdown began (the listener returned it before it was closed) is
// served as a client that was logging in when the drain began: it has drainGrace to
// start a transaction, which then completes. A connection Serve accepted (accepted) is
// always served: Serve holds a place in s.wg meanwhile. Another (DialContext) is not once
// Shutdown waits for the connections: serveConn then reports false. The connection joins
// s.wg under s.mu, where Shutdown sets waiting, so none joins an empty s.wg while
// Shutdown waits.
func (s *Server) serveConn(conn net.Conn, accepted bool) bool {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = s.conf().keepalive().Apply(tc)
	}
	fio := fastio.New(conn)
	r := fastio.NewReader(fio)
	c := &clientSession{srv: s, connectedAt: time.Now().UnixNano()}
	fd := int32(-1)
	if s.parker != nil || s.loops != nil {
		fd = parkable(conn)
	}
	c.parkable = fd >= 0 && s.parker != nil
	if s.loops != nil && fd >= 0 {
		c.onLoops(fio, fd)
	}
	c.Conn.Init(&wakeConn{Conn: conn, c: c}, r, fastio.NewWriter(fio), s.conf().MaxPacketSize)
	c.Client.Init(s.lastClientID.Add(1), newClientLog(s.log.Handler(), conn.RemoteAddr().String()), (*leaseHost)(c))
	c.routing.srv = s
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		c.routing.addr = a.IP.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting && !accepted {
		return false
	}
	if s.closing.Load() {
		c.CloseAt.Store(lease.Nanotime() + int64(drainGrace))
		c.Closing.Store(true) // startup reads it and keeps to the drain's deadline
	}
	s.conns[c] = struct{}{}
	s.nClients.Add(1)
	s.xactWatch.Do(func() { go s.watchTransactions() })
	if s.parker != nil {
		s.parkWatch.Do(func() { go s.parkIdle(s.conf().ParkIdleAfter) })
	}
	if s.loops != nil && s.parker == nil {
		s.parkWatch.Do(func() { go s.releaseLoopIdle() })
	}
	s.wg.Add(1) // done when the client leaves, whichever goroutine runs it then (park.go)
	go c.serve(s.ctx)
	return true
}

// overClientLimit reports whether this client is past max_client_conn.
func (s *Server) overClientLimit() bool {
	return s.nClients.Load() > int64(s.conf().MaxClientConn)
}

// Shutdown stops accepting clients and asks each to leave at its next transaction
// boundary. It waits for them until ctx ends, then closes the rest, and closes every
// server connection. It returns when ctx ends even if server logins in progress still
// hold the pools open: those are closed as soon as the logins end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true) // a client that registers from now on drains from the start
	clients := make([]*clientSession, 0, len(s.conns))
	for c := range s.conns {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	// The clients are asked to leave before the listeners close: once a new connection is
	// refused, every client connected before it has been told, and a request it sends
	// after that is one the drain answers (with 57P01, past its grace).
	for _, c := range clients {
		c.RequestClose(drainGrace)
	}
	// No connection joins s.wg from now on (see serveConn). One accepted before the
	// listeners closed and registered since is draining already.
	s.mu.Lock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
	s.waiting = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel() // ends the waits for a server of goroutines (waiter.go)...
		for _, bp := range s.poolsOf("") {
			bp.EndClaims(context.Canceled) // ...and of claims (claim.go)
		}
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Conn.Net.Close()
		}
		s.mu.Unlock()
	}
	s.cancel()
	s.notify.Close()
	if s.parker != nil {
		s.parker.Close() // resumes the clients still parked, which then see their sockets closed
	}
	if s.loops != nil {
		s.loops.Close() // the clients are gone: their sockets left the loops as they closed
	}
	// Closing the pools waits for server logins in progress, which a server that
	// accepted the connection and never answers can hold for server_connect_timeout:
	// that goes on after ctx ends, without Shutdown.
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-done
		for _, bp := range s.poolsOf("") {
			bp.Close()
		}
		if s.rs() != nil {
			s.rs().Close()
		}
		s.peerLinks.CloseAll()
	}()
	select {
	case <-stopped:
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drainGrace is how long a draining cmpool still serves a client that has just connected
// or just finished a transaction, before closing it (see requestClose).
const drainGrace = time.Second

// authn returns the authenticator in force.
func (s *Server) authn() *authenticator { return s.auth.Load() }

// serverPasswords returns the cleartext passwords known for server logins, from the auth
// file's secrets and the [users] entries.
func serverPasswords(a *authenticator, fileSecrets map[string]string, users map[string]User) map[string]string {
	out := make(map[string]string)
	for u := range maps.Keys(fileSecrets) {
		if p, ok := a.PlainPassword(u); ok {
			out[u] = p
		}
	}
	for u := range users {
		if p, ok := a.PlainPassword(u); ok {
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
