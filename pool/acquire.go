package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// waitContext bounds waiting for a server by query_wait_timeout.
func (s *Server) waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if t := s.conf().QueryWaitTimeout; t > 0 {
		return context.WithTimeout(ctx, t)
	}
	return context.WithCancel(ctx)
}

// waiter returns the session's waiter for a server (waiter.go), made when there is none.
// ctx is the session's context, the server's (run).
func (c *clientSession) waiter(ctx context.Context) *waiter {
	if c.wait == nil {
		c.wait = newWaiter(ctx)
	}
	return c.wait
}

// dropWaiter lets go of the session's waiter, when it leaves, parks or waits on an event
// loop for its next request: an idle client holds none.
func (c *clientSession) dropWaiter() {
	if c.wait != nil {
		c.wait.release()
		c.wait = nil
	}
}

// acquireError turns a failure to get a server into the error the client sees.
func (s *Server) acquireError(err error, fatal bool) *protocol.Error {
	sev := protocol.SeverityError
	if fatal {
		sev = protocol.SeverityFatal
	}
	var pgErr *pgconn.PgError
	var connErr *pgconn.ConnectError
	switch {
	case errors.As(err, &pgErr):
		return &protocol.Error{Severity: sev, Code: pgErr.Code, Message: pgErr.Message, Detail: pgErr.Detail, Hint: pgErr.Hint}
	case errors.As(err, &connErr):
		return &protocol.Error{Severity: sev, Code: protocol.CodeConnectionFailure, Message: "could not connect to server: " + connErr.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &protocol.Error{Severity: sev, Code: protocol.CodeQueryCanceled,
			Message: fmt.Sprintf("query_wait_timeout: no server connection available within %s", s.conf().QueryWaitTimeout),
			Hint:    "raise default_pool_size or query_wait_timeout, or shorten transactions"}
	case errors.Is(err, puddle.ErrClosedPool), errors.Is(err, context.Canceled):
		return &protocol.Error{Severity: protocol.SeverityFatal, Code: protocol.CodeAdminShutdown, Message: "cmpool is shutting down"}
	default:
		return &protocol.Error{Severity: sev, Code: protocol.CodeConnectionFailure, Message: "could not connect to server: " + err.Error()}
	}
}

// acquireState is a request's way to a server: where it is routed, how many attempts it
// made, and, while it waits for a server on an event loop (claim.go), the request itself.
type acquireState struct {
	rs                        *router.ReplicaSet
	backend, replica, attempt int
	mayWrite, forced          bool
	fr                        protocol.Frame
	msg                       []byte
	bp                        *backendPool
	start                     int64
}

// acquire gets a server for the request fr (msg is its body when read whole), makes its
// parameters match this client's and starts the relay. On an event loop it may return
// lease.ErrSuspended: the session waits for a server as a claim, and goes on in
// afterClaim.
func (c *clientSession) acquire(ctx context.Context, fr protocol.Frame, msg []byte) (*lease.Lease, error) {
	if c.srv.pauses.Load() != nil {
		c.detachLoop()
		wctx, cancel := c.srv.waitContext(ctx)
		c.killableWait(&cancel)
		err := c.waitUnpaused(wctx)
		c.killableWait(nil)
		cancel()
		if c.killed.Load() {
			return nil, killedError()
		}
		if err != nil {
			return nil, c.srv.acquireError(err, false)
		}
	}
	c.requestAt.Store(lease.Nanotime())
	var a acquireState // copied into the claim state if the session waits as a claim
	a.rs = c.srv.rs()
	a.backend, a.replica, a.mayWrite, a.forced = c.routeFor(ctx, a.rs, fr.Type, msg)
	a.attempt, a.fr, a.msg = 0, fr, msg
	return c.acquireFrom(ctx, &a, false)
}

// acquireFrom makes acquire's attempts from a; claimed is set when the session comes back
// from a wait filed as a claim, whose end is in c.lp.claims.claim.
func (c *clientSession) acquireFrom(ctx context.Context, a *acquireState, claimed bool) (*lease.Lease, error) {
	for ; ; a.attempt++ {
		var res *puddle.Resource[*backend.Conn]
		var err error
		bp := a.bp
		switch {
		case claimed:
			claimed = false
			cl := &c.lp.claims.claim
			res, err = cl.Res, cl.Err
			retry := cl.Retry
			cl.Res, cl.Err = nil, nil
			c.claimEnded(a, res != nil)
			if retry {
				res, err = c.waitServer(ctx, bp)
			}
		default:
			if bp, err = c.pools.at(a.backend); err != nil {
				return nil, c.srv.acquireError(err, false)
			}
			if res = bp.TryAcquire(ctx); res != nil {
				break
			}
			var filed bool
			if res, filed, err = c.fileClaim(ctx, a, bp); filed {
				return nil, lease.ErrSuspended
			}
			if res == nil && err == nil {
				res, err = c.waitServer(ctx, bp)
			}
		}
		replica, rs := a.replica, a.rs
		if err != nil && c.killed.Load() {
			if replica >= 0 {
				rs.Done(replica)
			}
			return nil, killedError()
		}
		if err != nil && replica >= 0 && !errors.Is(err, context.DeadlineExceeded) {
			// The replica is unreachable: ban it and take the primary.
			rs.Ban(replica, err)
			rs.Done(replica)
			a.backend, a.replica, a.mayWrite = backendPrimary, -1, true
			continue
		}
		if errors.Is(err, puddle.ErrClosedPool) && !c.srv.closing.Load() && a.attempt < 3 {
			// A reload or a promotion replaced the pool meanwhile: take the new one.
			continue
		}
		if err != nil {
			if replica >= 0 {
				rs.Done(replica)
			}
			return nil, c.srv.acquireError(err, false)
		}
		if c.killed.Load() {
			// KILL_CLIENT: the request this server was for is not sent.
			bp.GiveBack(res, false)
			if replica >= 0 {
				rs.Done(replica)
			}
			return nil, killedError()
		}
		err = c.ApplyParams(ctx, res.Value())
		if err != nil {
			var pe *protocol.Error
			if errors.As(err, &pe) {
				// The server refused a setting: the client is told, and the server,
				// whose state is now in doubt, is closed.
				bp.GiveBack(res, true)
				if replica >= 0 {
					rs.Done(replica)
				}
				pe.Severity = protocol.SeverityError
				return nil, pe
			}
			bp.GiveBack(res, true)
			if replica >= 0 {
				if a.attempt == 0 {
					// Likely a replica that restarted: its idle connections are dead too.
					bp.DestroyIdle()
					continue
				}
				// Still failing: ban it and take the primary.
				rs.Ban(replica, err)
				rs.Done(replica)
				a.backend, a.replica, a.mayWrite = backendPrimary, -1, true
				continue
			}
			if a.attempt < 2 {
				continue
			}
			return nil, c.srv.acquireError(err, false)
		}
		if rs != nil {
			if replica < 0 {
				c.srv.routedPrimary.Add(1)
			}
			c.srv.observer.Observe(Event{Kind: EventRoute, Database: c.Database, User: c.User, Backend: bp.Name})
		}
		return c.Start(bp.Pool, res, lease.Route{Replica: replica, RS: rs, Forced: a.forced,
			NeedLSN: a.mayWrite && a.backend == backendPrimary && rs != nil && c.srv.conf().Consistency != "eventual"}), nil
	}
}

// waitServer waits for a server of bp as a goroutine, bounded by query_wait_timeout and
// ended by KILL_CLIENT.
func (c *clientSession) waitServer(ctx context.Context, bp *backendPool) (*puddle.Resource[*backend.Conn], error) {
	c.detachLoop() // the wait must not hold an event loop
	w := c.waiter(ctx)
	w.begin(c.srv.conf().QueryWaitTimeout)
	c.killableWait(&w.kill)
	start := lease.Nanotime()
	c.waitingSince.Store(start)
	res, err := bp.Acquire(w)
	c.waitingSince.Store(0)
	c.killableWait(nil)
	c.srv.noteWait(c.Database, c.User, bp, time.Duration(lease.Nanotime()-start))
	if !w.end() {
		c.wait = nil
	}
	return res, err
}
