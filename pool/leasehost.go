package pool

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/router"
)

// A clientSession is its leases' host: it answers for the Server, its routing and its
// pools.

func (c *clientSession) Config() lease.Config {
	cfg := c.srv.conf()
	return lease.Config{
		QueryTimeout: cfg.QueryTimeout, ServerConnectTimeout: cfg.ServerConnectTimeout,
		ClientIdleTimeout: cfg.ClientIdleTimeout, IdleTransactionTimeout: cfg.IdleTransactionTimeout,
		SlowTransaction: cfg.SlowTransaction, ServerResetQuery: cfg.ServerResetQuery, RouterHook: cfg.Router != nil,
	}
}

func (c *clientSession) Context() context.Context       { return c.srv.ctx }
func (c *clientSession) Statements() *stmt.Registry     { return c.srv.stmts }
func (c *clientSession) Classifier() *router.Classifier { return c.srv.classifier }
func (c *clientSession) NoteError(code string)          { c.srv.noteError(c.Database, c.User, code) }
func (c *clientSession) RelayFault() func(typ byte)     { return c.srv.relayFault }
func (c *clientSession) EndTransaction(wrote bool)      { c.routing.endTransaction(wrote) }
func (c *clientSession) NoteCommit()                    { c.routing.noteCommit(c.Database, c.User) }
func (c *clientSession) ReadOnlyReplayed()              { c.srv.readOnlyReplays.Add(1) }
func (c *clientSession) LoggedIn() bool                 { return c.loggedIn.Load() }
func (c *clientSession) NoteServerError(code string)    { c.srv.errors.add(code) }

func (c *clientSession) StatementCounters() *stmt.Counters { return &c.pools.primary.Counters.Stmt }

func (c *clientSession) Report(n lease.Report) {
	obs := c.srv.observer
	if n.ErrCode != "" {
		obs.Observe(Event{Kind: EventError, Database: c.Database, User: c.User, Backend: n.Backend, Code: n.ErrCode})
	}
	if n.HasQuery {
		obs.Observe(Event{Kind: EventQuery, Database: c.Database, User: c.User, Backend: n.Backend, Duration: n.Query})
	}
	if n.HasXact {
		obs.Observe(Event{Kind: EventTransaction, Database: c.Database, User: c.User, Backend: n.Backend, Duration: n.Xact})
		if slow := c.srv.conf().SlowTransaction; slow > 0 && n.Xact > slow {
			c.Log.Warn("slow transaction", "duration", n.Xact.Round(time.Microsecond), "backend", n.Backend)
		}
	}
}

func (c *clientSession) AcquirePrimary(ctx context.Context) (*backend.Pool, *puddle.Resource[*backend.Conn], error) {
	primary, err := c.pools.at(backendPrimary)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := c.srv.waitContext(ctx)
	defer cancel()
	res, err := primary.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return primary.Pool, res, nil
}

func (c *clientSession) AcquireRead(ctx context.Context, replicaOnly bool) (*backend.Pool, *puddle.Resource[*backend.Conn], lease.Route, error) {
	rs := c.srv.rs()
	if rs != nil {
		if min, err := c.routing.readLSN(ctx, rs, c.Database, c.User); err == nil {
			if idx, ok := rs.Pick(min); ok {
				bp, res, err := c.acquireOn(ctx, idx+1)
				if err == nil {
					return bp, res, lease.Route{Replica: idx, RS: rs, Forced: replicaOnly}, nil
				}
				rs.Done(idx)
				if !errors.Is(err, context.DeadlineExceeded) {
					rs.Ban(idx, err)
				}
			}
		}
	}
	if replicaOnly {
		return nil, nil, lease.Route{}, errNoReplica
	}
	bp, res, err := c.AcquirePrimary(ctx)
	return bp, res, lease.Route{Replica: -1, RS: rs}, err
}

func (c *clientSession) ReadReplayed() { c.srv.readReplays.Add(1) }

// errNoReplica: a read that must run on a replica found none usable.
var errNoReplica = errors.New("no usable replica")

// acquireOn takes a server of backend index for the client, waiting at most
// query_wait_timeout.
func (c *clientSession) acquireOn(ctx context.Context, index int) (*backend.Pool, *puddle.Resource[*backend.Conn], error) {
	bp, err := c.pools.at(index)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := c.srv.waitContext(ctx)
	defer cancel()
	res, err := bp.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return bp.Pool, res, nil
}

func (c *clientSession) Judgement(f string, gen uint64, now int64) (session.Judgement, bool) {
	fs, ok := c.srv.judgedFunc(c.Database, f, gen, now)
	return fs.Judgement, ok
}

func (c *clientSession) Judged(f string, j session.Judgement, gen uint64, now int64) {
	c.srv.funcSettings.Store(c.Database+"\x00"+f, funcSettings{Judgement: j, gen: gen, at: now})
}

// funcSettingsTTL bounds how long cmpool trusts its judgement of a function (its
// definition may change outside cmpool).
const funcSettingsTTL = 10 * time.Second

// funcSettings is a cached judgement of one function (Server.funcSettings).
type funcSettings struct {
	session.Judgement
	gen uint64 // stmt.Registry.SchemaGen() when judged
	at  int64  // nanotime when judged
}

// judgedFunc returns the judgement of function f of database still in force, if any.
func (s *Server) judgedFunc(database, f string, gen uint64, now int64) (funcSettings, bool) {
	e, ok := s.funcSettings.Load(database + "\x00" + f)
	if !ok {
		return funcSettings{}, false
	}
	fs := e.(funcSettings)
	if fs.gen != gen || now-fs.at > int64(funcSettingsTTL) {
		return funcSettings{}, false
	}
	return fs, true
}
