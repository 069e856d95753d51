package lease

import (
	"context"
	"time"

	"github.com/cmlite/cmpool/pool/internal/backend"
)

// Cancel requests.
//
// A client's CancelRequest goes to the server its client holds, and only while the
// client has requests outstanding on it that cmpool is not finishing itself: a cancel
// that arrives between transactions, or while cmpool reads settings back, replays a
// request on the primary or ends the lease, is dropped (nothing of the client's runs).
// cmpool opens a new connection per cancel and waits until the postmaster closes it,
// which it does once it has signalled the backend. Until then the server is "being
// canceled": it is not lent to anyone, since the signal could reach the next client's
// query. lease.giveBack, the one place a server goes back, waits for its cancels, at most
// settleTimeout, and closes the server if one is not answered (finishLease waits already,
// before cmpool's own queries on the server).

// settleTimeout bounds waiting for a server's cancels before it goes back to its pool;
// past it the server is closed.
const settleTimeout = backend.CancelTimeout + time.Second

// cancellableLocked reports whether a cancel request may go to l's server now: l is the
// client's lease and the client has requests outstanding on it that cmpool is not
// finishing itself. The caller holds c.mu.
func (c *Client) cancellableLocked(l *Lease) bool {
	return l != nil && c.Lease == l && (l.pending > 0 || l.unsynced) && l.open()
}

// CancelRunning sends a cancel request to the server of the client's lease l, if l is
// still cancellable (see cancellableLocked); fromClient tells a client's request from
// query_timeout's. It reports whether a cancel was sent, and its error.
func (c *Client) CancelRunning(ctx context.Context, l *Lease, fromClient bool) (bool, error) {
	c.Mu.Lock()
	if !c.cancellableLocked(l) {
		c.Mu.Unlock()
		return false, nil
	}
	sc, bp := l.sc, l.pool
	sc.Cancels.Add()
	c.Mu.Unlock()
	// Only sc and bp are used from here on: l may be reused for the next transaction.
	return true, sc.Cancel(ctx, &bp.Cancels, fromClient)
}
