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

// leaseHost is a client session in its role as its leases' host (lease.Host): it answers
// for the Server, the session's routing and its pools.
type leaseHost clientSession

var _ lease.Host = (*leaseHost)(nil)

func (h *leaseHost) Config() lease.Config {
	cfg := h.srv.conf()
	return lease.Config{
		QueryTimeout: cfg.QueryTimeout, ServerConnectTimeout: cfg.ServerConnectTimeout,
		ClientIdleTimeout: cfg.ClientIdleTimeout, IdleTransactionTimeout: cfg.IdleTransactionTimeout,
		SlowTransaction: cfg.SlowTransaction, ServerResetQuery: cfg.ServerResetQuery, RouterHook: cfg.Router != nil,
	}
}

func (h *leaseHost) Context() context.Context       { return h.srv.ctx }
func (h *leaseHost) Statements() *stmt.Registry     { return h.srv.stmts }
func (h *leaseHost) Classifier() *router.Classifier { return h.srv.classifier }
func (h *leaseHost) NoteError(code string) {
	h.srv.noteError(h.Database, h.User, code)
}
func (h *leaseHost) RelayFault() func(typ byte) { return h.srv.relayFault }
func (h *leaseHost) EndTransaction(wrote bool)  { h.routing.endTransaction(wrote) }
func (h *leaseHost) NoteCommit() {
	h.routing.noteCommit(h.Database, h.User)
}
func (h *leaseHost) ReadOnlyReplayed()           { h.srv.readOnlyReplays.Add(1) }
func (h *leaseHost) LoggedIn() bool              { return h.loggedIn.Load() }
func (h *leaseHost) NoteServerError(code string) { h.srv.errors.add(code) }

func (h *leaseHost) StatementCounters() *stmt.Counters {
	return &h.pools.primary.Counters.Stmt
}

func (h *leaseHost) Report(n lease.Report) {
	obs := h.srv.observer
	if n.ErrCode != "" {
		obs.Observe(Event{Kind: EventError, Database: h.Database, User: h.User, Backend: n.Backend, Code: n.ErrCode})
	}
	if n.HasQuery {
		obs.Observe(Event{Kind: EventQuery, Database: h.Database, User: h.User, Backend: n.Backend, Duration: n.Query})
	}
	if n.HasXact {
		obs.Observe(Event{Kind: EventTransaction, Database: h.Database, User: h.User, Backend: n.Backend, Duration: n.Xact})
		if slow := h.srv.conf().SlowTransaction; slow > 0 && n.Xact > slow {
			h.Log.Warn("slow transaction", "duration", n.Xact.Round(time.Microsecond), "backend", n.Backend)
		}
	}
}

func (h *leaseHost) AcquirePrimary(ctx context.Context) (*backend.Pool, *puddle.Resource[*backend.Conn], error) {
	primary, err := h.pools.at(backendPrimary)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := h.srv.waitContext(ctx)
	defer cancel()
	res, err := primary.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return primary.Pool, res, nil
}

func (h *leaseHost) AcquireRead(ctx context.Context, replicaOnly bool) (*backend.Pool, *puddle.Resource[*backend.Conn], lease.Route, error) {
	rs := h.srv.rs()
	if rs != nil {
		if min, err := h.routing.readLSN(ctx, rs, h.Database, h.User); err == nil {
			if idx, ok := rs.Pick(min); ok {
				bp, res, err := h.acquireOn(ctx, idx+1)
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
	bp, res, err := h.AcquirePrimary(ctx)
	return bp, res, lease.Route{Replica: -1, RS: rs}, err
}

func (h *leaseHost) ReadReplayed() { h.srv.readReplays.Add(1) }

// errNoReplica: a read that must run on a replica found none usable.
var errNoReplica = errors.New("no usable replica")

// acquireOn takes a server of backend index for the client, waiting at most
// query_wait_timeout.
func (h *leaseHost) acquireOn(ctx context.Context, index int) (*backend.Pool, *puddle.Resource[*backend.Conn], error) {
	bp, err := h.pools.at(index)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := h.srv.waitContext(ctx)
	defer cancel()
	res, err := bp.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return bp.Pool, res, nil
}

func (h *leaseHost) Judgement(f string, gen uint64, now int64) (session.Judgement, bool) {
	fs, ok := h.srv.judgedFunc(h.Database, f, gen, now)
	return fs.Judgement, ok
}

func (h *leaseHost) Judged(f string, j session.Judgement, gen uint64, now int64) {
	h.srv.funcSettings.Store(h.Database+"\x00"+f, funcSettings{Judgement: j, gen: gen, at: now})
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
