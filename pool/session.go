package pool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
)

// clientSession is one client connection: its login, its loop reading client messages,
// and what cmpool knows of it for routing and the console. The half its leases share
// (its socket, lock, settings, statements and current lease) is the embedded Client.
type clientSession struct {
	Client
	srv *Server

	key   cancelKey
	pools clientPools // its server pools; set once database and user are known

	routing routing // where its transactions go; under its own lock

	// For the admin console's SHOW CLIENTS and SHOW POOLS.
	admin        bool         // connected to the admin console
	loggedIn     atomic.Bool  // startup is complete
	connectedAt  time.Time    // when the connection was accepted
	requestAt    atomic.Int64 // Unix ns of the last transaction start
	waitingSince atomic.Int64 // nanotime when it began waiting for a server; 0 if not
}

// Client is the half of a client session its leases share.
type Client struct {
	// id names the session for the server connections it uses (never 0): a server
	// records which client its settings and unnamed statement are for by id.
	id uint64
	// client is the client's socket, its reader and its writer.
	//
	// Lock order for a client and its lease:
	//
	//	clientConn.wmu → lease.wmu → Client.mu → serverConn.Cancels.mu
	//
	// Any of them may be taken alone, or under the ones before it (send asks under
	// lease.wmu whether the client must wait, which takes mu); lease.wmu is never taken
	// under mu. routing.mu is a leaf: it is taken alone or under mu, and nothing is taken
	// under it. Server.mu is let go before a client's locks are taken (the server collects
	// its clients under it, then locks each). None of them is held across a wait for a
	// server, a login, a cancel request or an Observer hook; lease.wmu alone is held across
	// a query of cmpool's own on the lease's server (a retry, a replay, restoreStartup, the
	// ROLLBACK of refuseTransactionBlock). wmu is held while one message is written to the
	// client (the relay reads the rest of a server message as it copies it); lease.wmu
	// while cmpool's or the client's messages are written to the server; mu only to read
	// or change the session's state. The idle condition is on mu (see idle).
	client clientConn
	log    *slog.Logger
	// host is what the client's leases need of the rest of cmpool.
	host leaseHost

	database string
	user     string
	mode     Mode

	// settings are the session parameters this client wants on any server it uses, and
	// their startup values. Guarded by mu: the client goroutine reads them between leases;
	// the relay updates them from ParameterStatus while a lease is active.
	settings session.Settings

	// stmts are the client's prepared statements: its names for shared server
	// statements, its unnamed statement, and named Parses held back while it has no
	// server. Guarded by mu (the relay forgets statements whose Parse failed), except the
	// held Parses, which are the client goroutine's only.
	stmts stmt.Names
	out   []byte    // scratch for rewritten messages
	texts textCache // the statement texts converted last; the client goroutine's only

	mu   sync.Mutex // guards the lease and the fields marked so; see client for the lock order
	idle *sync.Cond // on mu; signalled at every ReadyForQuery, and when a lease is open again or over
	// lease is the server held now, or nil. Guarded by mu; the client goroutine sets it
	// (lease.start), the relay clears it when the lease ends, or replaces it when a
	// request moves to the primary (replayOnPrimary).
	lease *lease
	// prevLease is the last lease started; the next one takes over its buffers once its
	// relay has exited. unrelayed is the current lease while nothing relays its replies
	// (its state is unrelayed or parked; see relayAfter). The client goroutine's only.
	prevLease, unrelayed *lease
	// unflushed is the lease whose server has messages from send still in its write
	// buffer (held back while the client's next message was already here), or nil. The
	// client goroutine's only.
	unflushed *lease
	// beginDeferred: a plain BEGIN was answered by cmpool and is sent with the next
	// request that needs a server (deferbegin.go). The client goroutine's only.
	beginDeferred bool
	closing       atomic.Bool // Shutdown asked this client to go

	// discarding is set after an extended-protocol message failed before reaching a
	// server: later messages are dropped until Sync, as a server would.
	discarding bool

	idleArmed atomic.Bool // an idle timeout is set as the read deadline
	// idleSince is the nanotime the client last became idle (logged in, or a lease
	// ended); closeAt is when a drain may close it (see requestClose).
	idleSince, closeAt atomic.Int64
}

// init sets up a client; id names it for the servers it uses.
func (c *Client) init(id uint64, log *slog.Logger, host leaseHost) {
	c.id, c.log, c.host = id, log, host
	c.idle = sync.NewCond(&c.mu)
}

// readyIdle is ReadyForQuery with status idle.
var readyIdle = protocol.AppendReadyForQuery(nil, 'I')

// serve runs one client connection from startup to close.
func (c *clientSession) serve(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("client session panic: closing the client and its server", "panic", p, "stack", string(debug.Stack()))
			c.abandonAfterPanic()
		}
		c.srv.forgetClient(c)
		_ = c.client.conn.Close()
	}()
	err := c.startup(ctx)
	if err == nil {
		c.logConnection("client logged in", "admin", c.admin)
		if c.admin {
			err = c.adminLoop(ctx)
		} else {
			err = c.loop(ctx)
		}
	}
	// The server goes back (or is destroyed) before cmpool writes to the client itself,
	// since until then the relay owns the client's writer.
	c.endLease()
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
	c.log.Log(context.Background(), lvl, msg, args...)
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
		c.log.Log(context.Background(), lvl, "client closed", "code", pe.Code, "error", pe.Message)
	case isNormalClose(err):
		c.logConnection("client closed", "error", err)
	default:
		c.log.Warn("client closed", "error", err)
	}
}

// sendError writes an ErrorResponse to the client, when nothing else is writing to it.
func (c *clientSession) sendError(e *protocol.Error) {
	c.srv.noteError(c.database, c.user, e.Code)
	c.client.wmu.Lock()
	defer c.client.wmu.Unlock()
	_ = c.client.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.client.w.Write(protocol.AppendErrorResponse(nil, e))
	_ = c.client.w.Flush()
}

func isNormalClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *Client) currentLease() *lease {
	c.mu.Lock()
	l := c.lease
	c.mu.Unlock()
	return l
}

// textCache holds the statement texts a client converted last. A client usually sends
// the same few statements again and again (BEGIN, a query, COMMIT), and several checks
// read each one (cmpool's own commands, session state, routing), so the last
// textCacheSize texts converted are kept and returned again: a statement costs at most
// one copy, and a repeated one none. Only the client goroutine uses it.
type textCache struct {
	texts [textCacheSize]string
	next  int // the slot the next text replaces
}

// textCacheSize is how many statement texts a client keeps converted.
const textCacheSize = 4

// text returns statement text b as a string.
func (tc *textCache) text(b []byte) string {
	for _, t := range tc.texts {
		if string(b) == t && (len(t) > 0 || len(b) == 0) {
			return t
		}
	}
	t := string(b)
	tc.texts[tc.next] = t
	tc.next = (tc.next + 1) % textCacheSize
	return t
}

// queryText is the query string of a whole simple Query message, without its
// terminating zero byte.
func queryText(msg []byte) []byte {
	return bytes.TrimSuffix(msg[protocol.HeaderLen:], []byte{0})
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
