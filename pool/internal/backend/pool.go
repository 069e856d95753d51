package backend

import (
	"context"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/pool/internal/limit"
	"github.com/cmlite/cmpool/pool/internal/stmt"
)

// PoolConfig describes a pool of connections to one server.
type PoolConfig struct {
	// Name is "primary" or the replica's host:port, for stats and events.
	Name string
	// ConnConfig is what the pool's connections log in with.
	ConnConfig *pgconn.Config
	// Size is the most connections open at once (puddle's MaxSize).
	Size int
	// MinSize is how many connections maintenance keeps open; 0 is none.
	MinSize int
	// IdleTimeout closes connections idle longer than it (while more than MinSize are
	// open); 0 never does.
	IdleTimeout time.Duration
	// Lifetime closes connections older than it, when idle or returned; 0 never does.
	Lifetime time.Duration
	// ConnectTimeout bounds one connect and login; it must be positive.
	ConnectTimeout time.Duration
	// MaxPrepared is how many of cmpool's shared statements each connection keeps
	// prepared (see stmt.Prepared).
	MaxPrepared int
	// Passthrough returns what a client of the pool's user proved (SCRAM keys, md5
	// secret, cleartext password), for servers the pool has no password for; nil, or a
	// nil result, means none.
	Passthrough func() *auth.Passthrough
	// Limits are the limits the pool's connections count against (max_db_connections,
	// max_user_connections); nil entries are none.
	Limits []*limit.Limit
	// LimitWait bounds how long opening a connection waits for a slot of Limits; 0 waits
	// until the pool closes.
	LimitWait time.Duration
	// Reserve is how many more connections than Size clients that waited ReserveTimeout
	// may open (reserve_pool_size, reserve_pool_timeout); 0 is none.
	Reserve        int
	ReserveTimeout time.Duration
	// CheckQuery is run on a connection idle longer than CheckDelay before it is lent
	// (server_check_query, server_check_delay); a connection it fails on is closed and
	// another taken. A CheckDelay of 0 is no check.
	CheckQuery string
	CheckDelay time.Duration
	// RoundRobin lends the connection idle longest instead of the one idle shortest
	// (server_round_robin).
	RoundRobin bool
	// LoginRetry is how long after a failed login the pool fails new logins at once with
	// that login's error, without trying (server_login_retry); 0 always tries.
	LoginRetry time.Duration
	// Claims lets client sessions on event loops wait for a server without a goroutine
	// (File, claim.go).
	Claims bool
}

// Pool is the set of server connections to one server for one (database, user): a
// puddle pool with an alive check on acquire and a maintenance goroutine.
type Pool struct {
	// Name is "primary" or the replica's host:port, for stats and events.
	Name string
	// ConnConfig is what the pool's connections log in with.
	ConnConfig *pgconn.Config
	// Cancels are the cancel requests in progress to the pool's servers.
	Cancels CancelCounters
	// Counters are what the pool's leases did, added to as they progress.
	Counters Counters

	p           *puddle.Pool[*Conn]
	minSize     int
	idleTimeout time.Duration
	lifetime    time.Duration
	// reconnectBefore (Unix ns): connections made before it are closed on release
	// (RECONNECT).
	reconnectBefore atomic.Int64
	// conns holds every open server connection (*Conn -> struct{}), for SHOW SERVERS.
	conns       sync.Map
	passthrough func() *auth.Passthrough
	limits      []*limit.Limit
	limitWait   time.Duration
	// reserve holds the connections opened past the pool's size for clients that waited
	// reserveTimeout; nil when there is no reserve.
	reserve        *puddle.Pool[*Conn]
	reserveTimeout time.Duration
	checkQuery     string
	checkDelay     time.Duration
	checkTimeout   time.Duration
	roundRobin     bool
	loginRetry     time.Duration
	loginFailure   atomic.Pointer[loginFailure]
	// claims are the sessions waiting for a server without a goroutine (claim.go).
	claims   claims
	claimsOn bool

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	// upkeep bounds the logins maintain starts; Close cancels it.
	upkeep       context.Context
	cancelUpkeep context.CancelFunc
}

// aliveCheckAfter is how long a connection may sit idle before acquire checks that the
// server has not closed it.
const aliveCheckAfter = time.Second

// NewPool makes a pool and starts its maintenance; Close stops it.
func NewPool(cfg PoolConfig) (*Pool, error) {
	bp := &Pool{
		Name:           cfg.Name,
		ConnConfig:     cfg.ConnConfig,
		passthrough:    cfg.Passthrough,
		minSize:        cfg.MinSize,
		idleTimeout:    cfg.IdleTimeout,
		lifetime:       cfg.Lifetime,
		limitWait:      cfg.LimitWait,
		reserveTimeout: cfg.ReserveTimeout,
		checkQuery:     cfg.CheckQuery,
		checkDelay:     cfg.CheckDelay,
		checkTimeout:   cfg.ConnectTimeout,
		roundRobin:     cfg.RoundRobin,
		loginRetry:     cfg.LoginRetry,
		claimsOn:       cfg.Claims,
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
	}
	connCfg, connectTimeout := cfg.ConnConfig, cfg.ConnectTimeout
	bp.upkeep, bp.cancelUpkeep = context.WithCancel(context.Background())
	pc := &puddle.Config[*Conn]{
		Constructor: func(ctx context.Context) (*Conn, error) {
			if err := bp.recentLoginFailure(); err != nil {
				return nil, err
			}
			if err := bp.takeSlots(ctx); err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			var sc *Conn
			var err error
			switch keys := bp.passthroughKeys(); {
			case keys != nil && keys.Password != "":
				cc := connCfg.Copy()
				cc.Password = keys.Password
				sc, err = Connect(ctx, cc)
			case keys != nil:
				sc, err = loginPassthrough(ctx, connCfg, keys)
			default:
				sc, err = Connect(ctx, connCfg)
			}
			if err != nil {
				bp.giveSlots()
				bp.noteLoginFailure(err)
				return nil, err
			}
			sc.Prepared = stmt.NewPrepared(cfg.MaxPrepared)
			bp.conns.Store(sc, struct{}{})
			return sc, nil
		},
		Destructor: func(sc *Conn) {
			bp.conns.Delete(sc)
			_ = sc.Close()
			bp.giveSlots()
		},
		MaxSize: int32(cfg.Size),
	}
	p, err := puddle.NewPool(pc)
	if err != nil {
		return nil, err
	}
	bp.p = p
	if cfg.Reserve > 0 {
		rc := *pc
		rc.MaxSize = int32(cfg.Reserve)
		if bp.reserve, err = puddle.NewPool(&rc); err != nil {
			return nil, err
		}
	}
	for _, l := range cfg.Limits {
		if l != nil {
			bp.limits = append(bp.limits, l)
			l.Join(bp)
		}
	}
	go bp.maintain()
	return bp, nil
}

// TryAcquire returns an idle server connection that looks alive, or nil without waiting.
// When none is idle and the pool has room, a new connection starts in the background.
func (bp *Pool) TryAcquire(ctx context.Context) *puddle.Resource[*Conn] {
	if res := bp.oldestIdle(ctx, bp.p); res != nil {
		return res
	}
	for {
		res, err := bp.p.TryAcquire(ctx)
		if err != nil {
			return nil
		}
		if !bp.usable(ctx, res) {
			bp.destroy(res)
			continue
		}
		return res
	}
}

// DestroyIdle closes every idle connection, after one of them turned out dead.
func (bp *Pool) DestroyIdle() {
	for _, p := range bp.puddles() {
		for _, res := range p.AcquireAllIdle() {
			res.Destroy()
		}
	}
}

// Counters are a pool's counters, added to as leases progress.
type Counters struct {
	Stmt stmt.Counters // Parses and Binds
	// Requests answered and transactions ended, and their total durations (ns).
	Queries, Xacts      atomic.Int64
	QueryTime, XactTime atomic.Int64
	Received, Sent      atomic.Int64 // bytes from and to clients
	WaitTime, Waits     atomic.Int64 // clients' waits for a server (ns), and their count
}

// GiveBack is the one place a server connection taken from the pool goes back to it, or
// is closed when destroy is set. A lease's server comes here through its lease, which
// settles cancels and moves the lease's state first; the few servers that never become a
// lease (the one a login checks the client's parameters on, one whose parameters failed
// to apply, one a function's volatility is looked up on) come here directly.
func (bp *Pool) GiveBack(res *puddle.Resource[*Conn], destroy bool) {
	if destroy {
		bp.destroy(res)
		return
	}
	bp.Release(res)
}

// Release returns a clean server connection, or closes it once it has lived too long.
// A session waiting for a server on an event loop gets it directly (claim.go).
func (bp *Pool) Release(res *puddle.Resource[*Conn]) {
	res.Value().Linked.Store(0)
	if bp.lifetime > 0 && time.Since(res.CreationTime()) > bp.lifetime ||
		res.CreationTime().UnixNano() < bp.reconnectBefore.Load() {
		bp.destroy(res)
		return
	}
	bp.giveBack(res)
}

// maintain closes connections idle past idleTimeout and keeps minSize open.
func (bp *Pool) maintain() {
	defer close(bp.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-bp.stop:
			return
		case <-tick.C:
		}
		if bp.reserve != nil {
			bp.expire(bp.reserve, 0)
		}
		total := bp.expire(bp.p, bp.minSize)
		bp.sweepClaims()
		for i := total; i < bp.minSize; i++ {
			ctx, cancel := context.WithTimeout(bp.upkeep, 30*time.Second)
			err := bp.p.CreateResource(context.WithValue(ctx, noWaitKey{}, true))
			cancel()
			if err != nil {
				break
			}
		}
	}
}

// expire closes p's connections idle past idleTimeout, while more than minSize are open,
// and those older than lifetime; it returns how many are left open.
func (bp *Pool) expire(p *puddle.Pool[*Conn], minSize int) int {
	total := int(p.Stat().TotalResources())
	for _, res := range p.AcquireAllIdle() {
		if bp.idleTimeout > 0 && res.IdleDuration() > bp.idleTimeout && total > minSize {
			res.Destroy()
			total--
			continue
		}
		if bp.lifetime > 0 && time.Since(res.CreationTime()) > bp.lifetime {
			res.Destroy()
			total--
			continue
		}
		res.ReleaseUnused()
	}
	return total
}

// Close stops maintenance and closes every connection; acquired ones close on return.
func (bp *Pool) Close() {
	bp.stopOnce.Do(func() {
		bp.closeClaims()
		close(bp.stop)
		bp.cancelUpkeep() // a login for min_pool_size in progress is given up
		<-bp.done
		for _, p := range bp.puddles() {
			p.Close()
		}
		for _, l := range bp.limits {
			l.Leave(bp)
		}
	})
}

// passthroughKeys returns what to log in with when the pool has no password.
func (bp *Pool) passthroughKeys() *auth.Passthrough {
	if bp.passthrough == nil || bp.ConnConfig.Password != "" {
		return nil
	}
	return bp.passthrough()
}

// Conns yields every open server connection of the pool, idle or in use.
func (bp *Pool) Conns() iter.Seq[*Conn] {
	return func(yield func(*Conn) bool) {
		bp.conns.Range(func(k, _ any) bool { return yield(k.(*Conn)) })
	}
}

// Reconnect closes every connection made before now: idle ones at once, the others when
// they are returned (RECONNECT).
func (bp *Pool) Reconnect(now time.Time) {
	bp.reconnectBefore.Store(now.UnixNano())
	bp.DestroyIdle()
}

// CloseNeeded reports whether sc is to be closed when it is returned (see Reconnect).
func (bp *Pool) CloseNeeded(sc *Conn) bool {
	return sc.CreatedAt.UnixNano() < bp.reconnectBefore.Load()
}
