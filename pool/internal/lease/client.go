package lease

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
	// ID names the session for the server connections it uses (never 0): a server
	// records which client its settings and unnamed statement are for by ID.
	ID uint64
	// Conn is the Conn's socket, its reader and its writer.
	//
	// Lock order for a Conn and its lease:
	//
	//	clientConn.wmu → lease.wmu → Client.mu → backend.Conn.Cancels.mu
	//
	// Any of them may be taken alone, or under the ones before it (send asks under
	// lease.wmu whether the Conn must wait, which takes mu); lease.wmu is never taken
	// under mu. routing.mu is a leaf: it is taken alone or under mu, and nothing is taken
	// under it. Server.mu is let go before a Conn's locks are taken (the server collects
	// its clients under it, then locks each). None of them is held across a wait for a
	// server, a login, a cancel request or an Observer hook; lease.wmu alone is held across
	// a query of cmpool's own on the lease's server (a retry, a replay, restoreStartup, the
	// ROLLBACK of refuseTransactionBlock). wmu is held while one message is written to the
	// Conn (the relay reads the rest of a server message as it copies it); lease.wmu
	// while cmpool's or the Conn's messages are written to the server; mu only to read
	// or change the session's state. The idle condition is on mu (see idle).
	Conn ClientConn
	Log  *slog.Logger
	// Host is what the client's leases need of the rest of cmpool.
	Host Host

	Database string
	User     string
	// Pin is how session state pins the client to its server (pin.go); set at login.
	Pin  PinPolicy
	Mode Mode
	// pinReserved: a max_pinned slot is reserved for a statement that pins, not yet on a
	// lease. The client goroutine's only.
	pinReserved bool
	// OnLoops: the client may wait on event loops (Host.WaitServer); set before it runs.
	OnLoops bool
	// BeginDeferred: a plain BEGIN was answered by cmpool and is sent with the next
	// request that needs a server (deferbegin.go). The client goroutine's only.
	BeginDeferred bool
	// Discarding is set after an extended-protocol message failed before reaching a
	// server: later messages are dropped until Sync, as a server would.
	Discarding bool
	// (The bools are together: they share a word.)
	// judged is the last simple query judged, and what its checks share (Judge), or
	// nil. The client goroutine's only.
	judged *Judged

	// Settings are the session parameters this client wants on any server it uses, and
	// their startup values. Guarded by mu: the client goroutine reads them between leases;
	// the relay updates them from ParameterStatus while a lease is active.
	Settings session.Settings

	// Stmts are the client's prepared statements: its names for shared server
	// statements, its unnamed statement, and named Parses held back while it has no
	// server. Guarded by mu (the relay forgets statements whose Parse failed), except the
	// held Parses, which are the client goroutine's only.
	Stmts stmt.Names
	out   *[]byte    // scratch for rewritten messages; nil until first needed
	texts *TextCache // the statement texts converted last (Text); the client goroutine's only

	// SQLCommand is the SQL-level PREPARE or EXECUTE judged for the query being sent
	// (JudgePreparedSQL), or nil. The client goroutine's only.
	SQLCommand *stmt.SQLCommand

	Mu sync.Mutex // guards the lease and the fields marked so; see client for the lock order
	// idle, on Mu, is signalled at every ReadyForQuery, and when a lease is open again or
	// over (broadcastIdle); nil until the client first waits on it (waitIdleCond).
	idle *sync.Cond
	// Lease is the server held now, or nil. Guarded by mu; the client goroutine sets it
	// (Lease.start), the relay clears it when the Lease ends, or replaces it when a
	// request moves to the primary (replayOnPrimary).
	Lease *Lease
	// prevLease is the last lease started; the next one takes over its buffers once its
	// relay has exited. unrelayed is the current lease while nothing relays its replies
	// (its state is unrelayed or parked; see relayAfter). The client goroutine's only.
	prevLease, unrelayed *Lease
	// suspended is the lease whose inline relay waits on an event loop for its server
	// (relayAfter, ResumeRelay). The client goroutine's only.
	suspended *Lease
	// unflushed is the lease whose server has messages from send still in its write
	// buffer (held back while the client's next message was already here), or nil. The
	// client goroutine's only.
	unflushed *Lease

	Closing   atomic.Bool // Shutdown asked this client to go
	idleArmed atomic.Bool // an idle timeout is set as the read deadline
	// idleDeadline is that deadline, in Unix nanoseconds (RestoreReadDeadline).
	idleDeadline atomic.Int64
	// IdleSince is the nanotime the client last became idle (logged in, or a lease
	// ended); CloseAt is when a drain may close it (see requestClose).
	IdleSince, CloseAt atomic.Int64
}

// Init sets up a client; id names it for the servers it uses.
func (c *Client) Init(id uint64, log *slog.Logger, host Host) {
	c.ID, c.Log, c.Host = id, log, host
}

// waitIdleCond waits for broadcastIdle. The caller holds c.Mu.
func (c *Client) waitIdleCond() {
	if c.idle == nil {
		c.idle = sync.NewCond(&c.Mu)
	}
	c.idle.Wait()
}

// broadcastIdle wakes the client goroutine if it waits in waitIdleCond. The caller holds
// c.Mu.
func (c *Client) broadcastIdle() {
	if c.idle != nil {
		c.idle.Broadcast()
	}
}

// ForgetIdle drops what the client keeps between leases only to allocate less under
// traffic: the last lease, with its buffers, the scratch for rewritten messages and the
// statement texts. The client goroutine calls it when the client holds no server and goes
// idle for long (it is parked): its next transaction allocates them again.
func (c *Client) ForgetIdle() { c.prevLease, c.out, c.texts, c.judged = nil, nil, nil, nil }

// ReadyIdle is ReadyForQuery with status idle.
var ReadyIdle = protocol.AppendReadyForQuery(nil, 'I')

func IsNormalClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *Client) CurrentLease() *Lease {
	c.Mu.Lock()
	l := c.Lease
	c.Mu.Unlock()
	return l
}

// TextCache holds the statement texts a client converted last. A client usually sends
// the same few statements again and again (BEGIN, a query, COMMIT), and several checks
// read each one (cmpool's own commands, session state, routing), so the last
// textCacheSize texts converted are kept and returned again: a statement costs at most
// one copy, and a repeated one none. Only the client goroutine uses it.
type TextCache struct {
	texts [textCacheSize]string
	next  int // the slot the next text replaces
}

// textCacheSize is how many statement texts a client keeps converted.
const textCacheSize = 4

// Text returns statement Text b as a string.
func (tc *TextCache) Text(b []byte) string {
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

// Text returns statement text b as a string, from the client's cache of the texts
// converted last when it is there.
func (c *Client) Text(b []byte) string {
	if c.texts == nil {
		c.texts = new(TextCache)
	}
	return c.texts.Text(b)
}

// QueryText is the query string of a whole simple Query message, without its
// terminating zero byte.
func QueryText(msg []byte) []byte {
	return bytes.TrimSuffix(msg[protocol.HeaderLen:], []byte{0})
}

func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Nanotime is a monotonic clock reading in nanoseconds.
func Nanotime() int64 { return int64(time.Since(monoStart)) }

// WallTime is the wall-clock time of Nanotime reading mono.
func WallTime(mono int64) time.Time { return monoStart.Add(time.Duration(mono)) }

// monoStart anchors nanotime.
var monoStart = time.Now()

// ClientConn is a client's socket, with its buffered reader and writer. The client
// goroutine reads (r, fr) and sets up TLS during startup; writes (w) go under wmu, since
// both the relay (server replies) and the client goroutine (cmpool's own answers) write.
type ClientConn struct {
	Net net.Conn
	// TLS is the TLS layer over conn once TLS is negotiated; r and w then use it.
	// tlsEndPoint is its tls-server-end-point channel binding data.
	TLS         *tls.Conn
	TLSEndPoint []byte
	R           *fastio.Reader
	FR          *protocol.FrameReader
	MaxPacket   int // the frame reader's largest message body (max_packet_size)
	// W writes to the client, under wmu (see clientSession.client for the lock order).
	W   *fastio.Writer
	WMu sync.Mutex
}

// Init reads and writes conn through r and w.
func (cc *ClientConn) Init(conn net.Conn, r *fastio.Reader, w *fastio.Writer, maxPacket int) {
	cc.Net, cc.R, cc.FR, cc.MaxPacket, cc.W = conn, r, protocol.NewFrameReader(r, maxPacket), maxPacket, w
}

// WriteLocal sends bytes cmpool itself produced, when no lease is active.
func (cc *ClientConn) WriteLocal(b []byte) error {
	cc.WMu.Lock()
	defer cc.WMu.Unlock()
	if _, err := cc.W.Write(b); err != nil {
		return err
	}
	return cc.W.Flush()
}

// LocalStatus is the transaction status cmpool reports for a client that holds no server:
// in a transaction if a BEGIN is deferred, else idle.
func (c *Client) LocalStatus() byte {
	if c.BeginDeferred {
		return 'T'
	}
	return 'I'
}

// RequestClose asks the client to leave at its next transaction boundary: now, if it
// holds no server. A client idle for less than grace gets until then.
func (c *Client) RequestClose(grace time.Duration) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	// A client idle for less than grace (one that has just logged in, or just ended a
	// transaction and is about to send the next) gets until then to start a transaction,
	// which then completes before it is closed.
	now := Nanotime()
	closeAt := now
	if since := c.IdleSince.Load(); since == 0 {
		closeAt = now + int64(grace) // still logging in
	} else if now-since < int64(grace) {
		closeAt = since + int64(grace)
	}
	c.CloseAt.Store(closeAt)
	c.Closing.Store(true)
	l := c.Lease
	// A syncing lease is ending cleanly, and its relay is using the server (txStatus is
	// the relay's until then).
	if l == nil || !l.open() || l.pending == 0 && !l.unsynced && l.sc.TxStatus == 'I' {
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(time.Duration(closeAt - now)))
	}
}
