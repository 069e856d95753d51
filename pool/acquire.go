package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
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

// acquire gets a server for the next request, makes its parameters match this client's
// and starts the relay.
func (c *clientSession) acquire(ctx context.Context, typ byte, msg []byte) (*lease.Lease, error) {
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
	c.requestAt.Store(time.Now().UnixNano())
	rs := c.srv.rs()
	backend, replica, mayWrite, forced := c.routeFor(ctx, rs, typ, msg)
	for attempt := 0; ; attempt++ {
		bp, err := c.pools.at(backend)
		if err != nil {
			return nil, c.srv.acquireError(err, false)
		}
		res := bp.TryAcquire(ctx)
		if res == nil {
			c.detachLoop() // the wait must not hold an event loop
			w := c.waiter(ctx)
			w.begin(c.srv.conf().QueryWaitTimeout)
			c.killableWait(&w.kill)
			start := lease.Nanotime()
			c.waitingSince.Store(start)
			res, err = bp.Acquire(w)
			c.waitingSince.Store(0)
			c.killableWait(nil)
			c.srv.noteWait(c.Database, c.User, bp, time.Duration(lease.Nanotime()-start))
			if !w.end() {
				c.wait = nil
			}
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
				backend, replica, mayWrite = backendPrimary, -1, true
				continue
			}
			if errors.Is(err, puddle.ErrClosedPool) && !c.srv.closing.Load() && attempt < 3 {
				// A reload or a promotion replaced the pool meanwhile: take the new one.
				continue
			}
			if err != nil {
				if replica >= 0 {
					rs.Done(replica)
				}
				return nil, c.srv.acquireError(err, false)
			}
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
				if attempt == 0 {
					// Likely a replica that restarted: its idle connections are dead too.
					bp.DestroyIdle()
					continue
				}
				// Still failing: ban it and take the primary.
				rs.Ban(replica, err)
				rs.Done(replica)
				backend, replica, mayWrite = backendPrimary, -1, true
				continue
			}
			if attempt < 2 {
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
		return c.Start(bp.Pool, res, lease.Route{Replica: replica, RS: rs, Forced: forced,
			NeedLSN: mayWrite && backend == backendPrimary && rs != nil && c.srv.conf().Consistency != "eventual"}), nil
	}
}
