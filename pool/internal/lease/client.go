package pool

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
)

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

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(monoStart)) }

// monoStart anchors nanotime.
var monoStart = time.Now()

// clientConn is a client's socket, with its buffered reader and writer. The client
// goroutine reads (r, fr) and sets up TLS during startup; writes (w) go under wmu, since
// both the relay (server replies) and the client goroutine (cmpool's own answers) write.
type clientConn struct {
	conn net.Conn
	// tlsConn is the TLS layer over conn once TLS is negotiated; r and w then use it.
	// tlsEndPoint is its tls-server-end-point channel binding data.
	tlsConn     *tls.Conn
	tlsEndPoint []byte
	r           *fastio.Reader
	fr          *protocol.FrameReader
	maxPacket   int // the frame reader's largest message body (max_packet_size)
	// w writes to the client, under wmu (see clientSession.client for the lock order).
	w   *fastio.Writer
	wmu sync.Mutex
}

// init reads and writes conn through r and w.
func (cc *clientConn) init(conn net.Conn, r *fastio.Reader, w *fastio.Writer, maxPacket int) {
	cc.conn, cc.r, cc.fr, cc.maxPacket, cc.w = conn, r, protocol.NewFrameReader(r, maxPacket), maxPacket, w
}

// writeLocal sends bytes cmpool itself produced, when no lease is active.
func (cc *clientConn) writeLocal(b []byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if _, err := cc.w.Write(b); err != nil {
		return err
	}
	return cc.w.Flush()
}
