package pool

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// poolKey names one pool of server connections.
type poolKey struct {
	database string // as the client named it
	user     string // as the client named it
	backend  int    // 0 is the primary
}

// backendPool is the set of server connections for one (database, user, backend).
type backendPool struct {
	key         poolKey
	mode        Mode
	ConnConfig     *pgconn.Config
	p           *puddle.Pool[*serverConn]
	minSize     int
	idleTimeout time.Duration
	lifetime    time.Duration
	counters    poolCounters
	// Name is "primary" or the replica's host:port, for stats and events.
	Name string
	// reconnectBefore (Unix ns): connections made before it are closed on release
	// (RECONNECT).
	reconnectBefore atomic.Int64
	// conns holds every open server connection (*serverConn -> struct{}), for SHOW SERVERS.
	conns sync.Map
	// passthrough returns what a client of this pool's user proved (SCRAM keys, md5
	// secret, cleartext password), for servers this pool has no password for; nil means
	// none.
	passthrough func() *passthroughKeys

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	// upkeep bounds the logins maintain starts; close cancels it.
	upkeep       context.Context
	cancelUpkeep context.CancelFunc
}

// aliveCheckAfter is how long a connection may sit idle before acquire checks that the
// server has not closed it.
const aliveCheckAfter = time.Second

func newBackendPool(key poolKey, mode Mode, connCfg *pgconn.Config, size, minSize, maxPrepared int, idleTimeout, lifetime, connectTimeout time.Duration, passthrough func() *passthroughKeys) (*backendPool, error) {
	name := "primary"
	if key.backend > 0 {
		name = net.JoinHostPort(connCfg.Host, strconv.Itoa(int(connCfg.Port)))
	}
	bp := &backendPool{
		Name:        name,
		key:         key,
		passthrough: passthrough,
		mode:        mode,
		ConnConfig:     connCfg,
		minSize:     minSize,
		idleTimeout: idleTimeout,
		lifetime:    lifetime,
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	bp.upkeep, bp.cancelUpkeep = context.WithCancel(context.Background())
	p, err := puddle.NewPool(&puddle.Config[*serverConn]{
		Constructor: func(ctx context.Context) (*serverConn, error) {
			ctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			var sc *serverConn
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
				return nil, err
			}
			sc.Prepared = newStmtLRU(maxPrepared)
			bp.conns.Store(sc, struct{}{})
			return sc, nil
		},
		Destructor: func(sc *serverConn) {
			bp.conns.Delete(sc)
			_ = sc.Close()
		},
		MaxSize: int32(size),
	})
	if err != nil {
		return nil, err
	}
	bp.p = p
	go bp.maintain()
	return bp, nil
}

// TryAcquire returns an idle server connection that looks alive, or nil without waiting.
// When none is idle and the pool has room, a new connection starts in the background.
func (bp *backendPool) TryAcquire(ctx context.Context) *puddle.Resource[*serverConn] {
	for {
		res, err := bp.p.TryAcquire(ctx)
		if err != nil {
			return nil
		}
		if res.IdleDuration() > aliveCheckAfter && !res.Value().Alive() {
			res.Destroy()
			continue
		}
		return res
	}
}

// Acquire returns a server connection that looks alive, waiting for one until ctx ends.
func (bp *backendPool) Acquire(ctx context.Context) (*puddle.Resource[*serverConn], error) {
	for {
		res, err := bp.p.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		if res.IdleDuration() > aliveCheckAfter && !res.Value().Alive() {
			res.Destroy()
			continue
		}
		return res, nil
	}
}

// DestroyIdle closes every idle connection, after one of them turned out dead.
func (bp *backendPool) DestroyIdle() {
	for _, res := range bp.p.AcquireAllIdle() {
		res.Destroy()
	}
}

// Release returns a clean server connection, or closes it once it has lived too long.
func (bp *backendPool) Release(res *puddle.Resource[*serverConn]) {
	res.Value().Linked.Store(0)
	if bp.lifetime > 0 && time.Since(res.CreationTime()) > bp.lifetime ||
		res.CreationTime().UnixNano() < bp.reconnectBefore.Load() {
		res.Destroy()
		return
	}
	res.Release()
}

// maintain closes connections idle past idleTimeout and keeps minSize open.
func (bp *backendPool) maintain() {
	defer close(bp.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-bp.stop:
			return
		case <-tick.C:
		}
		total := int(bp.p.Stat().TotalResources())
		for _, res := range bp.p.AcquireAllIdle() {
			if bp.idleTimeout > 0 && res.IdleDuration() > bp.idleTimeout && total > bp.minSize {
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
		for i := total; i < bp.minSize; i++ {
			ctx, cancel := context.WithTimeout(bp.upkeep, 30*time.Second)
			err := bp.p.CreateResource(ctx)
			cancel()
			if err != nil {
				break
			}
		}
	}
}

// Close stops maintenance and closes every connection; acquired ones Close on return.
func (bp *backendPool) Close() {
	bp.stopOnce.Do(func() {
		close(bp.stop)
		bp.cancelUpkeep() // a login for min_pool_size in progress is given up
		<-bp.done
		bp.p.Close()
	})
}

// passthroughKeys returns what to log in with when the pool has no password.
func (bp *backendPool) passthroughKeys() *passthroughKeys {
	if bp.passthrough == nil || bp.ConnConfig.Password != "" {
		return nil
	}
	return bp.passthrough()
}
