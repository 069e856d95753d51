package pool

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/notify"
	"github.com/cmlite/cmpool/protocol"
)

// clientSession is one client connection: its login, its loop reading client messages,
// and what cmpool knows of it for routing and the console. The half its leases share
// (its socket, lock, settings, statements and current lease) is the embedded Client.
type clientSession struct {
	lease.Client
	srv *Server

	key   cancelKey
	pools clientPools // its server pools; set once database and user are known

	routing routing // where its transactions go; under its own lock

	// listening is the client's end of its LISTENs outside session mode (notifications.go);
	// nil until its first LISTEN. The client goroutine's only.
	listening *notify.Subscriber

	// For the admin console's SHOW CLIENTS and SHOW POOLS.
	admin        bool         // connected to the admin console
	parkable     bool         // see Parking below (next to admin: they share a word)
	loggedIn     atomic.Bool  // startup is complete
	connectedAt  int64        // Unix ns when the connection was accepted
	requestAt    atomic.Int64 // lease.Nanotime of the last transaction start
	waitingSince atomic.Int64 // nanotime when it began waiting for a server; 0 if not

	// KILL_CLIENT (console.go): killed is set once the client is killed; waitKill ends
	// its wait for a server, while it waits.
	waitKill atomic.Pointer[context.CancelFunc]
	killed   atomic.Bool
	// wait is what the client goroutine waits for a server under (waiter.go); nil until
	// its first wait, and while idle on an event loop or parked (dropWaiter).
	wait *waiter

	xactTimedOut atomic.Bool // its transaction outlived transaction_timeout

	// Parking (park.go): parkable is set when its socket can be parked; parkReq is the
	// sweeper's request to park; parkTok, while parked, wakes it (0 when not parked),
	// changed under parkMu.
	parkReq atomic.Bool
	// parkRefused is the IdleSince at which the client last refused to park for a state
	// only its next message ends (a held-back BEGIN, LISTEN...): the sweeper asks it again
	// once it has sent something (the loop clears it) or become idle anew.
	parkRefused atomic.Int64
	// rearmIdle asks the client goroutine to arm client_idle_timeout, which a reload
	// turned on (rearmIdleClients).
	rearmIdle atomic.Bool
	parkTok   atomic.Uint64
	parkMu    sync.Mutex

	// lp is the session's event-loop state (loops.go); nil when the loops are off or the
	// socket cannot wait on them.
	lp *onLoop
}

// runFrom is where run starts a client session.
type runFrom int

const (
	resumeLoop    runFrom = iota // suspended between requests on an event loop
	resumeRelay                  // its inline relay suspended on an event loop
	runFresh                     // a new connection: startup first
	resumePark                   // parked (park.go)
	resumeAcquire                // it waited for a server as a claim on an event loop (claim.go)
)

// serve runs one client connection from startup to close.
func (c *clientSession) serve(ctx context.Context) { c.run(ctx, runFresh) }

// run runs the client from its startup, or from where it was parked (park.go) or
// suspended (loops.go), until it leaves, or is parked or suspended again. The client's
// place in the server's wait group is given back when it leaves.
func (c *clientSession) run(ctx context.Context, from runFrom) {
	parked := false
	defer func() {
		if p := recover(); p != nil {
			c.Log.Error("client session panic: closing the client and its server", "panic", p, "stack", string(debug.Stack()))
			c.AbandonAfterPanic()
		} else if parked {
			return
		}
		c.dropWaiter()
		c.srv.forgetClient(c)
		_ = c.Conn.Net.Close()
		c.srv.wg.Done()
	}()
	var err error
	switch from {
	case resumeLoop:
		err = c.loop(ctx)
	case resumeRelay:
		if err = c.ResumeRelay(); err == nil {
			err = c.loop(ctx)
		}
	case resumeAcquire:
		if err = c.afterClaim(ctx); err == nil {
			err = c.loop(ctx)
		}
	case resumePark:
		c.afterPark() // a drain may have begun while it was parked
		err = c.loop(ctx)
	default:
		if err = c.startup(ctx); err == nil {
			c.logConnection("client logged in", "admin", c.admin)
			switch {
			case c.admin:
				err = c.adminLoop(ctx)
			case c.parkAtLogin():
				err = errParked
			default:
				err = c.loop(ctx)
			}
		}
	}
	if err == errParked || err == lease.ErrSuspended {
		// Another goroutine may run c already.
		parked = true
		return
	}
	c.unlistenAll()
	// The server goes back (or is destroyed) before cmpool writes to the client itself,
	// since until then the relay owns the client's writer.
	c.EndLease()
	if err != nil {
		c.reportAndLog(err)
	} else {
		c.logConnection("client closed")
	}
}

// logConnection logs a connection or disconnection: at info level with log_connections,
// else at debug level.
func (c *clientSession) logConnection(msg string, args ...any) {
	lvl := slog.LevelDebug
	if c.srv.conf().LogConnections {
		lvl = slog.LevelInfo
	}
	c.Log.Log(context.Background(), lvl, msg, args...)
}

// reportAndLog sends a protocol error to the client when there is one, and logs the rest.
func (c *clientSession) reportAndLog(err error) {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		c.sendError(pe)
		lvl := slog.LevelInfo
		if pe.Code == protocol.CodeAdminShutdown {
			lvl = slog.LevelDebug
		}
		c.Log.Log(context.Background(), lvl, "client closed", "code", pe.Code, "error", pe.Message)
	case lease.IsNormalClose(err):
		c.logConnection("client closed", "error", err)
	default:
		c.Log.Warn("client closed", "error", err)
	}
}

// sendError writes an ErrorResponse to the client, when nothing else is writing to it.
func (c *clientSession) sendError(e *protocol.Error) {
	c.srv.noteError(c.Database, c.User, e.Code)
	c.Conn.WMu.Lock()
	defer c.Conn.WMu.Unlock()
	_ = c.Conn.Net.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Conn.W.Write(protocol.AppendErrorResponse(nil, e))
	_ = c.Conn.W.Flush()
}
