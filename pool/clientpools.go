package pool

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// clientPools finds a client's server pools. The pool on the primary is kept, and looked
// up again after a promotion changed which server is the primary (Server.primaryGen). It
// is used by the goroutine that acquires a server for the client: the client goroutine,
// or the relay when it replays a request on the primary (replayOnPrimary).
type clientPools struct {
	c       *clientSession // whose pools: its server, database and user
	primary *backendPool   // see at
	gen     uint64         // Server.primaryGen when primary was looked up
}

// at returns the client's pool on a backend.
func (p *clientPools) at(backend int) (*backendPool, error) {
	if backend != backendPrimary {
		return p.c.srv.poolFor(p.c.Database, p.c.User, backend)
	}
	if gen := p.c.srv.primaryGen.Load(); gen != p.gen {
		bp, err := p.c.srv.poolFor(p.c.Database, p.c.User, backendPrimary)
		if err != nil {
			return nil, err
		}
		p.primary, p.gen = bp, gen
	}
	return p.primary, nil
}

// lookupVolatile asks the primary whether function f is volatile in the client's database.
func (p *clientPools) lookupVolatile(ctx context.Context, f string) (bool, error) {
	bp, err := p.at(backendPrimary)
	if err != nil {
		return true, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.c.srv.conf().ServerConnectTimeout)
	defer cancel()
	return lookupVolatile(ctx, bp, f)
}

// loginOnReplica logs a client in mode in on a usable replica when the primary failed
// with err, a connection failure: the replica proves the database and user exist as well,
// and the client's reads can be served while the primary is down. Session mode, and
// databases mapped to another server, never use replicas. It returns nil when no replica
// can serve.
func (p *clientPools) loginOnReplica(ctx context.Context, err error, mode lease.Mode, log *slog.Logger) (*backendPool, *puddle.Resource[*backend.Conn]) {
	rs := p.c.srv.rs()
	if !p.c.srv.routable(rs, mode, p.c.Database) {
		return nil, nil
	}
	var pgErr *pgconn.PgError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57P") {
		return nil, nil
	}
	idx, ok := rs.Pick(0)
	if !ok {
		return nil, nil
	}
	defer rs.Done(idx)
	bp, err := p.c.srv.poolFor(p.c.Database, p.c.User, idx+1)
	if err != nil {
		return nil, nil
	}
	actx, cancel := p.c.srv.waitContext(ctx)
	defer cancel()
	res, err := bp.Acquire(actx)
	if err != nil {
		return nil, nil
	}
	log.Debug("primary unavailable: logged in on a replica", "replica", idx)
	return bp, res
}
