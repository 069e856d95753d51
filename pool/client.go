package pool

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// clientSession is one client connection. Its goroutine reads client messages and
// forwards them; while it holds a server (a lease), a relay goroutine copies the server's
// replies back and decides, at each ReadyForQuery, whether the lease ends.
type clientSession struct {
	srv  *Server
	conn net.Conn
	// tlsConn is the TLS layer over conn once TLS is negotiated; r and w then use it.
	// tlsEndPoint is its tls-server-end-point channel binding data.
	tlsConn     *tls.Conn
	tlsEndPoint []byte
	r           *clientReader
	fr          *protocol.FrameReader
	// w writes to the client, under wmu: the relay writes server replies, the client
	// goroutine cmpool's own answers.
	//
	// Lock order for a client and its lease: wmu, then mu, then serverConn.cancels.mu;
	// lease.wmu may be taken under wmu, never under mu. None of them is held across a
	// wait for a server, a login, a cancel request or an Observer hook. wmu is held while
	// one message is written to the client (the relay reads the rest of a server message
	// as it copies it); lease.wmu while cmpool's or the client's messages are written to
	// the server; mu only to read or change the session's state.
	w   *clientWriter
	wmu sync.Mutex
	log *slog.Logger

	key      cancelKey
	database string
	user     string
	pool     *backendPool // on the primary; see poolAt
	poolGen  uint64       // Server.primaryGen when pool was looked up
	mode     Mode

	// params are the session parameters this client wants on any server it uses, and
	// paramsVersion counts their changes. The client goroutine reads them between leases;
	// the relay updates them from ParameterStatus while a lease is active.
	params        map[string]string
	paramsVersion uint64
	// initialParams are the parameters as the session started, for DISCARD ALL.
	initialParams map[string]string

	// stmts maps the client's prepared-statement names to shared server statements.
	// Guarded by mu (the relay forgets statements whose Parse failed).
	stmts map[string]*preparedStmt
	// unnamed is the client's last Parse of the unnamed statement (the whole message),
	// and unnamedGen counts those Parses.
	unnamed       []byte
	unnamedGen    uint64
	unnamedTraits queryTraits
	// deferred holds named Parse messages received outside a transaction, not yet sent
	// anywhere (see deferParse).
	deferred [][]byte
	evicted  []*preparedStmt // scratch for evictFor
	out      []byte          // scratch for rewritten messages
	// texts are the statement texts text converted last, and textNext the slot the next
	// one replaces; the client goroutine's only.
	texts    [textCache]string
	textNext int
	// unnamedText is the text of the unnamed statement unnamedTraits describe, and
	// boundName the statement name last bound (kept to be reused as long as it is the
	// same). Guarded by mu.
	unnamedText, boundName string

	// Routing: cmpool.route for the session and for the next transaction only, and the
	// WAL positions this client's reads must see. Guarded by mu.
	route, routeOnce     string
	lastWriteLSN, minLSN router.LSN
	// wroteAt is when a transaction that may have written last committed on the primary,
	// if its position is not read yet (see noteWriteLocked); zero otherwise.
	wroteAt time.Time

	mu    sync.Mutex // guards the lease and the fields marked so; see wmu for the lock order
	idle  *sync.Cond // on mu; signalled at every ReadyForQuery
	lease *lease     // the server held now, or nil
	// prevLease is the last lease started; the next one takes over its buffers once its
	// relay has exited. unrelayed is the current lease while nothing relays its replies
	// yet (see relayAfter). parked is set while unrelayed is idle in a transaction with
	// nothing outstanding: the server owes no reply, so the client may be read without a
	// relay. The client goroutine's only.
	prevLease, unrelayed *lease
	parked               bool
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

	// For the admin console's SHOW CLIENTS and SHOW POOLS.
	admin        bool         // connected to the admin console
	loggedIn     atomic.Bool  // startup is complete
	connectedAt  time.Time    // when the connection was accepted
	requestAt    atomic.Int64 // Unix ns of the last transaction start
	waitingSince atomic.Int64 // nanotime when it began waiting for a server; 0 if not
	idleArmed    atomic.Bool  // an idle timeout is set as the read deadline
	// idleSince is the nanotime the client last became idle (logged in, or a lease
	// ended); closeAt is when a drain may close it (see requestClose).
	idleSince, closeAt atomic.Int64
}

// lease is one loan of a server connection to a client.
type lease struct {
	pool *backendPool
	res  *puddle.Resource[*serverConn]
	sc   *serverConn
	// replica is the index in rs of the replica the lease reads from, or -1 on the
	// primary; rs is the replica set in force when the lease began.
	replica int
	rs      *router.ReplicaSet
	// needLSN: the lease may have written on the primary; its commit is noted when it
	// ends, for read-your-writes.
	needLSN bool
	// queryTimeout is twice query_timeout (a cancel request went out at query_timeout):
	// while requests are outstanding the server's read deadline is this far past the
	// last one sent. Zero means none.
	queryTimeout time.Duration
	// Guarded by clientSession.mu:
	pending     int    // Query/Sync/FunctionCall sent whose ReadyForQuery has not come back
	unsynced    bool   // extended-protocol messages sent since the last Sync
	sentSeq     uint64 // Query/Sync/FunctionCall messages sent
	executed    bool   // a Query, FunctionCall or Execute was sent: something may have written
	recvSeq     uint64 // ReadyForQuery messages received
	parses      inflightQueue
	closes      inflightQueue
	bound       []boundStmt // named statements bound in Sync segments not yet answered
	track       []string    // parameters changed by this lease's statements, to read back
	syncing     bool        // the relay is reading them back; the client goroutine waits
	ending      bool        // the relay is flushing the reply that ends the lease; likewise
	resetNeeded bool        // session-bound features were used: DISCARD ALL before reuse
	tempCheck   bool        // temporary objects were mentioned: check for them before reuse
	abandoned   bool        // the client is gone; the relay must destroy the server

	// restoreSeg is the Sync segment after which the startup values of the parameters in
	// restore are set again (restoreStartup); 0 if none. restoreFailed: that segment
	// failed, so nothing was reset. Guarded by clientSession.mu.
	restoreSeg    uint64
	restore       []string
	restoreFailed bool

	// The current Sync segment, kept for a retry (retry.go). Guarded by mu.
	seg                     []byte
	segOK, segDone, retried bool
	// Relay-owned: whether the segment being answered has sent the client anything, and
	// an error held back for a retry.
	answered    bool
	heldErr     []byte
	toPrimary   bool   // the held error is a replica's 25006: replay on the primary
	forced      bool   // the client chose the replica: no 25006 safety net
	heldReplies []byte // a replica's describing replies, held until the first row or end
	stopping    bool   // the client goroutine wants the relay to stop without closing
	destroyed   bool   // the relay destroyed the server; set before done is closed

	heldStatus [][2]string // relay-owned: ParameterStatus held until startup values are restored

	// wmu is held while the client goroutine writes to the server, so the relay can wait
	// for a write in progress before giving the server to someone else; and while the
	// relay writes cmpool's own messages (a retry, a replay, the ROLLBACK of
	// refuseTransactionBlock), so that nothing of the client's is interleaved. It is
	// taken after clientSession.wmu, never under clientSession.mu.
	wmu sync.Mutex
	// done is closed when the relay exits. It is made when a relay goroutine starts; a
	// lease relayed whole on the client goroutine gets relayDone.
	done chan struct{}

	// Statistics: nanotime of the oldest unanswered request and of the transaction's
	// first request (0: none; guarded by clientSession.mu); bytes from the client
	// (client goroutine) and to it (relay goroutine) not yet added to the pool's counters.
	qStart, xStart int64
	recvBytes      atomic.Int64
	sentBytes      int64
	// queryTimer cancels a request running past query_timeout; nil until first armed.
	queryTimer *time.Timer
	// released is set by finishLease once the server is back in its pool (see newLease).
	// A cancel request never refers to the lease after checking it under
	// clientSession.mu (cancel.go).
	released bool
	// hiddenBegin: a deferred BEGIN was sent first on this lease and its replies are
	// still due; the relay drops them. Guarded by clientSession.mu.
	hiddenBegin bool
	// ready is what the last ReadyForQuery ended, not yet reported to the Observer
	// (noteReady, reportReady). Whoever relays the lease owns it.
	ready readyNote
	// untracked: a statement may have changed settings it does not name (set_config, DO,
	// …); opaque: custom ones whose names it does not give either; settingNames and
	// settingFuncs are the custom parameters and the user-defined functions the
	// statements name. All settings are read back when the lease ends if
	// any of these may have changed some (untrackedChanges). Guarded by clientSession.mu.
	untracked, opaque          bool
	settingNames, settingFuncs []string
}

const clientBufSize = 8 * 1024

// readyIdle is ReadyForQuery with status idle.
var readyIdle = protocol.AppendReadyForQuery(nil, 'I')

// ignoredStartupParams are startup parameters that are not session settings.
var ignoredStartupParams = map[string]bool{
	"user": true, "database": true, "options": true, "replication": true,
}

// reportedParams are the parameters PostgreSQL reports with ParameterStatus, in the
// spelling it uses. Parameter names are case-insensitive; cmpool keeps these in the
// server's spelling and every other name in lower case, so that names compare equal.
var reportedParams = func() map[string]string {
	m := make(map[string]string)
	for _, n := range []string{"application_name", "client_encoding", "DateStyle", "default_transaction_read_only",
		"in_hot_standby", "integer_datetimes", "IntervalStyle", "is_superuser", "scram_iterations", "search_path",
		"server_encoding", "server_version", "session_authorization", "standard_conforming_strings", "TimeZone"} {
		m[strings.ToLower(n)] = n
	}
	return m
}()

func canonicalParamName(name string) string {
	l := strings.ToLower(name)
	if n, ok := reportedParams[l]; ok {
		return n
	}
	return l
}

// serve runs one client connection from startup to close.
func (c *clientSession) serve(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("client session panic: closing the client and its server", "panic", p, "stack", string(debug.Stack()))
			c.abandonAfterPanic()
		}
		c.srv.forgetClient(c)
		_ = c.conn.Close()
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
	c.noteError(nil, e.Code)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.w.Write(protocol.AppendErrorResponse(nil, e))
	_ = c.w.Flush()
}

func isNormalClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// startup negotiates SSL, reads the StartupMessage, logs the client in and sends the
// initial parameter statuses, all under client_login_timeout.
func (c *clientSession) startup(ctx context.Context) error {
	_ = c.conn.SetDeadline(time.Now().Add(c.srv.conf().ClientLoginTimeout))
	if c.isClosing() {
		// Shutdown began before this goroutine ran: its drain deadline stands.
		_ = c.conn.SetReadDeadline(time.Now().Add(drainGrace))
	}
	var req *protocol.StartupRequest
	for sslDone, gssDone := false, false; ; {
		var err error
		if !sslDone {
			sslDone, err = c.maybeDirectTLS(ctx)
		}
		if err == nil {
			req, err = protocol.ReadStartupRequest(c.r)
		}
		if err != nil {
			if isTimeout(err) && c.isClosing() {
				return protocol.NewFatal(protocol.CodeAdminShutdown, "cmpool is shutting down")
			}
			if isTimeout(err) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, "client_login_timeout: startup not completed in time")
			}
			return err
		}
		switch {
		case req.SSL && !sslDone:
			sslDone = true
			if err := c.negotiateSSL(ctx); err != nil {
				return err
			}
			continue
		case req.GSSENC && !gssDone:
			gssDone = true
			if _, err := c.conn.Write([]byte{'N'}); err != nil {
				return err
			}
			continue
		case req.SSL || req.GSSENC:
			return protocol.NewFatal(protocol.CodeProtocolViolation, "duplicate SSL or GSSAPI negotiation request")
		case req.Cancel != nil:
			c.srv.handleCancel(ctx, req.Cancel)
			return io.EOF
		}
		break
	}
	sm := req.Startup
	c.user = sm.Parameters["user"]
	c.database = sm.Parameters["database"]
	if c.database == "" {
		c.database = c.user
	}
	c.log = c.log.With("user", c.user, "database", c.database)
	if sm.Parameters["replication"] != "" && sm.Parameters["replication"] != "false" && sm.Parameters["replication"] != "off" {
		return protocol.NewFatal(protocol.CodeFeatureNotSupported, "replication connections are not supported through cmpool")
	}
	if req.NeedsNegotiation() {
		b, _ := req.NegotiateMessage().Encode(nil)
		_, _ = c.w.Write(b)
	}
	if c.srv.overClientLimit() {
		return protocol.NewFatal(protocol.CodeTooManyConnections,
			fmt.Sprintf("no more connections allowed (max_client_conn %d)", c.srv.conf().MaxClientConn))
	}
	params := make(map[string]string, len(sm.Parameters))
	for k, v := range sm.Parameters {
		if !ignoredStartupParams[k] {
			params[canonicalParamName(k)] = v
		}
	}
	if opts := sm.Parameters["options"]; opts != "" {
		o, err := protocol.ParseOptions(opts)
		if err != nil {
			return protocol.NewFatal(protocol.CodeFeatureNotSupported, err.Error())
		}
		for k, v := range o {
			params[canonicalParamName(k)] = v
		}
	}
	c.route = routeAuto
	if r, ok := params["cmpool.route"]; ok {
		delete(params, "cmpool.route")
		switch r = strings.ToLower(r); r {
		case routeAuto, routePrimary, routeReplica:
			c.route = r
		default:
			return protocol.NewFatal("22023", fmt.Sprintf("invalid value for cmpool.route: %q (want primary, replica or auto)", r))
		}
	}
	if r := c.srv.conf().Databases[c.database].Route; r != "" {
		c.route = r
	}
	c.params = params
	if err := c.authenticate(ctx); err != nil {
		return err
	}
	if c.srv.isAdminDatabase(c.database) {
		return c.adminStartup()
	}
	if c.srv.disabledDBs()[c.database] {
		return protocol.NewFatal(protocol.CodeObjectNotInState, fmt.Sprintf("database %q is not currently accepting connections", c.database))
	}

	gen := c.srv.primaryGen.Load()
	bp, err := c.srv.poolFor(c.database, c.user, backendPrimary)
	if err != nil {
		return protocol.NewFatal(protocol.CodeInvalidCatalogName, err.Error())
	}
	c.pool, c.poolGen = bp, gen
	c.mode = bp.mode

	// While the database is paused, a transaction-mode client logs in without a server,
	// as in PgBouncer, when an earlier login of the same user to it left the server's
	// parameters; its first query waits for RESUME.
	if p := c.srv.pauses.Load(); c.mode != ModeSession && p.covers(c.database) && !p.holdsLogins(c.database) {
		if w, ok := c.srv.welcomes.Load(welcomeKey{c.database, c.user}); ok {
			return c.loginWithoutServer(w.(map[string]string))
		}
	}

	// Log in on a real server: it proves the database and user exist, and it gives the
	// server's canonical values of the client's parameters to report back.
	acqCtx, cancel := c.waitContext(ctx)
	defer cancel()
	if err := c.waitUnpaused(acqCtx); err != nil {
		return c.acquireError(err, true)
	}
	// Waiting here counts as waiting for a server, as it does later.
	start := nanotime()
	c.waitingSince.Store(start)
	res, err := bp.acquire(acqCtx)
	for attempt := 0; errors.Is(err, puddle.ErrClosedPool) && !c.srv.closing.Load() && attempt < 3; attempt++ {
		// A reload or a promotion replaced the pool meanwhile: take the new one.
		if bp, err = c.poolAt(backendPrimary); err == nil {
			res, err = bp.acquire(acqCtx)
		}
	}
	c.waitingSince.Store(0)
	if d := time.Duration(nanotime() - start); d > time.Millisecond {
		c.noteWait(bp, d)
	}
	if err != nil {
		// With the primary down, a replica can log the client in: its reads still work.
		rbp, rres := c.loginOnReplica(ctx, err)
		if rres == nil {
			return c.acquireError(err, true)
		}
		bp, res = rbp, rres
	}
	sc := res.Value()
	err = c.applyParams(ctx, sc)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			// The server refused a parameter value: the server itself is fine.
			bp.release(res)
			return pe
		}
		res.Destroy()
		return protocol.NewFatal(protocol.CodeConnectionFailure, "server connection failed during login: "+err.Error())
	}
	c.srv.noteWelcome(welcomeKey{c.database, c.user}, sc.defaults)
	// Report the server's values, then the client's canonical ones.
	report := maps.Clone(sc.defaults)
	for k, v := range sc.set {
		report[k] = v
	}
	for k := range c.params {
		if v, ok := report[k]; ok {
			c.params[k] = v
		}
	}
	sc.configuredFor, sc.configuredVersion = c, c.paramsVersion
	if err := c.welcome(report); err != nil {
		bp.release(res)
		return err
	}
	if c.mode == ModeSession {
		c.startLease(nil, bp, res)
		c.ensureRelay()
	} else {
		bp.release(res)
		c.armIdleTimeout(false)
	}
	return nil
}

// loginWithoutServer completes the login of a transaction-mode client from the
// parameters a server of its database and user reported at an earlier login, with the
// client's own values over them (as the client sent them: no server has checked them yet;
// a server refuses a bad one at the first query).
func (c *clientSession) loginWithoutServer(serverParams map[string]string) error {
	report := maps.Clone(serverParams)
	for k, v := range c.params {
		if _, ok := report[k]; ok {
			report[k] = v
		}
	}
	if err := c.welcome(report); err != nil {
		return err
	}
	c.armIdleTimeout(false)
	return nil
}

// welcome sends the end of a successful login: the parameter statuses in report,
// BackendKeyData and ReadyForQuery. The client is logged in from then on.
func (c *clientSession) welcome(report map[string]string) error {
	if err := c.srv.registerClient(c); err != nil {
		return err
	}
	c.initialParams = maps.Clone(c.params)
	names := make([]string, 0, len(report))
	for k := range report {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []byte
	for _, k := range names {
		out, _ = (&pgproto3.ParameterStatus{Name: k, Value: report[k]}).Encode(out)
	}
	out, _ = (&pgproto3.BackendKeyData{ProcessID: c.key.pid, SecretKey: c.key.secret[:]}).Encode(out)
	out = protocol.AppendReadyForQuery(out, 'I')
	_ = c.conn.SetDeadline(time.Time{})
	if err := c.writeLocal(out); err != nil {
		return err
	}
	c.loggedIn.Store(true)
	c.mu.Lock()
	c.idleSince.Store(nanotime())
	if c.closing.Load() {
		// A drain began during the login: the client's first request is on its way.
		c.closeAt.Store(nanotime() + int64(drainGrace))
		_ = c.conn.SetReadDeadline(time.Now().Add(drainGrace))
	}
	c.mu.Unlock()
	return nil
}

// waitContext bounds waiting for a server by query_wait_timeout.
func (c *clientSession) waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if t := c.srv.conf().QueryWaitTimeout; t > 0 {
		return context.WithTimeout(ctx, t)
	}
	return context.WithCancel(ctx)
}

// acquireError turns a failure to get a server into the error the client sees.
func (c *clientSession) acquireError(err error, fatal bool) *protocol.Error {
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
			Message: fmt.Sprintf("query_wait_timeout: no server connection available within %s", c.srv.conf().QueryWaitTimeout),
			Hint:    "raise default_pool_size or query_wait_timeout, or shorten transactions"}
	case errors.Is(err, puddle.ErrClosedPool), errors.Is(err, context.Canceled):
		return &protocol.Error{Severity: protocol.SeverityFatal, Code: protocol.CodeAdminShutdown, Message: "cmpool is shutting down"}
	default:
		return &protocol.Error{Severity: sev, Code: protocol.CodeConnectionFailure, Message: "could not connect to server: " + err.Error()}
	}
}

// applyParams makes sc's session parameters match the client's, with one round trip when
// anything differs, in a defined order (see applyparams.go). Values go through
// set_config, which parses them as a configuration file would, so list values such as
// search_path keep their meaning. It works on a snapshot of the client's parameters
// taken under c.mu: the relay goroutine calls it too (replayOnPrimary).
//
// At login a refused value is the client's error, returned as is (FATAL). Later, the
// settings the server refuses are dropped from the client's and a *protocol.Error says
// so; the caller closes the server.
func (c *clientSession) applyParams(ctx context.Context, sc *serverConn) error {
	c.mu.Lock()
	version := c.paramsVersion
	if sc.configuredFor == c && sc.configuredVersion == version {
		c.mu.Unlock()
		return nil
	}
	params := maps.Clone(c.params)
	c.mu.Unlock()
	resetAll := sc.unnamedSettings && sc.configuredFor != c
	steps := planParams(sc, params, resetAll)
	if len(steps) > 0 {
		ctx, cancel := context.WithTimeout(ctx, c.srv.conf().ServerConnectTimeout)
		defer cancel()
		res, err := sc.exec(ctx, paramsQuery(steps))
		if err != nil {
			return err
		}
		if res.err != nil {
			if sc.txStatus != 'I' {
				return fmt.Errorf("server left in transaction after SET: %w", res.err)
			}
			if !c.loggedIn.Load() {
				return &protocol.Error{Severity: protocol.SeverityFatal, Code: res.err.Code, Message: res.err.Message, Detail: res.err.Detail}
			}
			return c.restoreFailed(ctx, sc, steps, res.err)
		}
		recordApplied(sc, params, resetAll)
	}
	sc.configuredFor, sc.configuredVersion = c, version
	return nil
}

// loop reads client messages and forwards them until the client leaves.
func (c *clientSession) loop(ctx context.Context) error {
	for {
		if c.isClosing() && c.currentLease() == nil && nanotime() >= c.closeAt.Load() {
			return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
		}
		if c.unrelayed != nil && !c.parked && !c.fr.FrameBuffered() {
			// Reading the client may block: the server's replies must be read meanwhile.
			c.ensureRelay()
		}
		fr, err := c.fr.Next()
		if err != nil {
			if c.isClosing() {
				return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
			}
			if isTimeout(err) {
				if pe := c.idleTimeoutError(); pe != nil {
					return pe
				}
			}
			if errors.Is(err, protocol.ErrMessageTooLarge) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
			}
			var fe *protocol.FrameError
			if errors.As(err, &fe) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, fe.Error())
			}
			return err
		}
		c.disarmIdleTimeout()
		if f := c.srv.clientFault; f != nil {
			f(fr.Type)
		}
		switch fr.Type {
		case 'X':
			return nil
		case 'Q', 'F', 'S', 'P', 'B', 'D', 'E', 'C', 'H':
		case 'd', 'c', 'f':
			// Copy messages belong to a lease; outside one the server would ignore them.
			if c.currentLease() == nil {
				if err := c.fr.Skip(); err != nil {
					return err
				}
				continue
			}
		default:
			return protocol.NewFatal(protocol.CodeProtocolViolation, fmt.Sprintf("invalid frontend message type %q", fr.Type))
		}

		if c.discarding {
			// As a server does after an error in an extended-protocol batch.
			if err := c.fr.Skip(); err != nil {
				return err
			}
			if fr.Type == 'S' {
				c.discarding = false
				if err := c.writeLocal(readyIdle); err != nil {
					return err
				}
			}
			continue
		}

		// The messages cmpool may answer or rewrite are read whole; the rest stream.
		var msg []byte
		switch fr.Type {
		case 'Q', 'P', 'B', 'D', 'C', 'E':
			if msg, err = c.fr.Message(); err != nil {
				return err
			}
		}
		if fr.Type == 'Q' {
			q := c.text(queryText(msg))
			handled, err := c.proxyCommand(q)
			if !handled && err == nil {
				handled, err = c.simpleCommand(q)
			}
			if handled || err != nil {
				if err != nil {
					return err
				}
				continue
			}
			if deferred, err := c.deferBegin(q); deferred || err != nil {
				if err != nil {
					return err
				}
				continue
			}
		}

		if fr.Type == 'P' && c.deferParse(msg) {
			continue
		}
		if len(c.deferred) > 0 && (fr.Type == 'S' || fr.Type == 'H') && c.currentLease() == nil {
			if err := c.answerDeferred(fr.Type == 'S'); err != nil {
				return err
			}
			continue
		}

		l := c.claim(fr.Type)
		c.parked = false // the lease owes replies again, or is gone
		if l == nil {
			if fr.Type == 'S' {
				// A Sync with nothing before it: nothing to ask a server.
				if err := c.fr.Skip(); err != nil {
					return err
				}
				if err := c.writeLocal(protocol.AppendReadyForQuery(nil, c.localStatus())); err != nil {
					return err
				}
				continue
			}
			if fr.Type == 'H' {
				if err := c.fr.Skip(); err != nil {
					return err
				}
				continue
			}
			l, err = c.acquire(ctx, fr.Type, msg)
			if err != nil {
				var pe *protocol.Error
				if !errors.As(err, &pe) || pe.Fatal() {
					return err
				}
				if err := c.failRequest(fr, pe); err != nil {
					return err
				}
				continue
			}
			c.mu.Lock()
			l.account(fr.Type)
			c.mu.Unlock()
		}
		if c.beginDeferred {
			c.sendBegin(l)
		}
		if err := c.sendDeferred(l); err != nil {
			return err
		}
		c.recordForRetry(l, fr.Type, msg)
		if err := c.send(l, msg); err != nil {
			return err
		}
		l.recvBytes.Add(int64(protocol.HeaderLen + fr.BodyLen))
		if c.srv.conf().QueryTimeout > 0 && (fr.Type == 'Q' || fr.Type == 'S' || fr.Type == 'F') {
			c.armQueryTimer(l)
		}
		c.relayAfter(l, fr.Type)
	}
}

// failRequest answers a request that could not reach a server with pe, as a server
// would: a simple query gets ReadyForQuery at once; an extended-protocol message makes
// the session discard input until Sync.
func (c *clientSession) failRequest(fr protocol.Frame, pe *protocol.Error) error {
	if err := c.fr.Skip(); err != nil {
		return err
	}
	c.deferred = c.deferred[:0] // a server would have skipped them too
	c.beginDeferred = false     // the transaction is over (deferbegin.go)
	c.noteError(nil, pe.Code)
	out := protocol.AppendErrorResponse(nil, pe)
	switch fr.Type {
	case 'Q', 'F':
		out = protocol.AppendReadyForQuery(out, 'I')
	default:
		c.discarding = true
	}
	return c.writeLocal(out)
}

// localStatus is the transaction status cmpool reports for a client that holds no server:
// in a transaction if a BEGIN is deferred, else idle.
func (c *clientSession) localStatus() byte {
	if c.beginDeferred {
		return 'T'
	}
	return 'I'
}

// writeLocal sends bytes cmpool itself produced, when no lease is active.
func (c *clientSession) writeLocal(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *clientSession) currentLease() *lease {
	c.mu.Lock()
	l := c.lease
	c.mu.Unlock()
	return l
}

func (c *clientSession) isClosing() bool { return c.closing.Load() }

// text returns statement text b as a string. A client usually sends the same few
// statements again and again (BEGIN, a query, COMMIT), and several checks read each one
// (cmpool's own commands, session state, routing), so the last textCache texts converted
// are kept and returned again: a statement costs at most one copy, and a repeated one
// none. Only the client goroutine calls it.
func (c *clientSession) text(b []byte) string {
	for _, t := range c.texts {
		if string(b) == t && (len(t) > 0 || len(b) == 0) {
			return t
		}
	}
	t := string(b)
	c.texts[c.textNext] = t
	c.textNext = (c.textNext + 1) % textCache
	return t
}

// textCache is how many statement texts a client keeps converted.
const textCache = 4

// queryText is the query string of a whole simple Query message, without its
// terminating zero byte.
func queryText(msg []byte) []byte {
	return bytes.TrimSuffix(msg[protocol.HeaderLen:], []byte{0})
}

// acquire gets a server for the next request, makes its parameters match this client's
// and starts the relay.
func (c *clientSession) acquire(ctx context.Context, typ byte, msg []byte) (*lease, error) {
	if c.srv.pauses.Load() != nil {
		wctx, cancel := c.waitContext(ctx)
		err := c.waitUnpaused(wctx)
		cancel()
		if err != nil {
			return nil, c.acquireError(err, false)
		}
	}
	c.requestAt.Store(time.Now().UnixNano())
	rs := c.srv.rs()
	backend, replica, mayWrite, forced := c.routeFor(ctx, rs, typ, msg)
	for attempt := 0; ; attempt++ {
		bp, err := c.poolAt(backend)
		if err != nil {
			return nil, c.acquireError(err, false)
		}
		res := bp.tryAcquire(ctx)
		if res == nil {
			actx, cancel := c.waitContext(ctx)
			start := nanotime()
			c.waitingSince.Store(start)
			res, err = bp.acquire(actx)
			c.waitingSince.Store(0)
			c.noteWait(bp, time.Duration(nanotime()-start))
			cancel()
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
				return nil, c.acquireError(err, false)
			}
		}
		err = c.applyParams(ctx, res.Value())
		if err != nil {
			var pe *protocol.Error
			if errors.As(err, &pe) {
				// The server refused a setting: the client is told, and the server,
				// whose state is now in doubt, is closed.
				res.Destroy()
				if replica >= 0 {
					rs.Done(replica)
				}
				pe.Severity = protocol.SeverityError
				return nil, pe
			}
			res.Destroy()
			if replica >= 0 {
				if attempt == 0 {
					// Likely a replica that restarted: its idle connections are dead too.
					bp.destroyIdle()
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
			return nil, c.acquireError(err, false)
		}
		if rs != nil {
			if replica < 0 {
				c.srv.routedPrimary.Add(1)
			}
			c.srv.observer.Observe(Event{Kind: EventRoute, Database: c.database, User: c.user, Backend: bp.name})
		}
		l := c.newLease()
		l.replica, l.rs, l.forced = replica, rs, forced
		l.needLSN = mayWrite && backend == backendPrimary && rs != nil && c.srv.conf().Consistency != "eventual"
		return c.startLease(l, bp, res), nil
	}
}

// startLease makes res this client's server, on lease l (its routing fields set, or nil
// for a primary lease). Its replies are relayed once requests are sent (relayAfter).
func (c *clientSession) startLease(l *lease, bp *backendPool, res *puddle.Resource[*serverConn]) *lease {
	if l == nil {
		l = c.newLease()
		l.replica = -1
	}
	l.pool, l.res, l.sc = bp, res, res.Value()
	l.sc.linked.Store(c)
	l.segDone = true
	c.reuseBuffers(l)
	l.queryTimeout = 2 * c.srv.conf().QueryTimeout
	c.mu.Lock()
	c.lease = l
	c.mu.Unlock()
	c.unrelayed = l
	return l
}

// Who relays a lease's replies.
//
// A relay goroutine copies the server's replies to the client while the client goroutine
// goes on reading the client, which pipelines, COPY and transactions need. But most
// leases are one request and its reply: for those the client goroutine relays the reply
// itself, and no goroutine is started and woken per transaction. relayAfter runs after
// each message sent: a Query or Sync with nothing more from the client is relayed on the
// client goroutine, until the lease ends or it needs the client again (a ReadyForQuery
// that does not end the lease, or COPY FROM STDIN); then a relay goroutine takes over the
// rest of the lease. Whenever the client goroutine may block reading the client, a relay
// goroutine runs (ensureRelay), so replies are never left unread.

// relayAfter relays l's replies on the client goroutine when the message of type typ
// just sent is the last of a request.
func (c *clientSession) relayAfter(l *lease, typ byte) {
	if c.unrelayed != l || typ != 'Q' && typ != 'S' {
		return
	}
	if c.fr.Buffered() > 0 {
		// A pipeline: its replies are relayed while the rest of it is sent, so that a
		// write to the server never waits for replies nobody reads.
		c.ensureRelay()
		return
	}
	c.unrelayed = nil
	l.done = relayDone
	switch c.relayLoop(l, true) {
	case relayHandOff:
		l.done = make(chan struct{})
		go c.relay(l)
	case relayPark:
		// Idle in a transaction: the next request of the transaction is relayed inline
		// too. Nothing reads the server until then; a server that fails meanwhile is seen
		// at that request.
		c.unrelayed, c.parked = l, true
	}
}

// relayDone is the done channel of leases relayed on the client goroutine.
var relayDone = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// ensureRelay starts a relay goroutine for the current lease if nothing relays its
// replies yet. The client goroutine calls it, with or without c.mu.
func (c *clientSession) ensureRelay() {
	if l := c.unrelayed; l != nil {
		c.unrelayed = nil
		l.done = make(chan struct{})
		go c.relay(l)
	}
}

// newLease returns an empty lease for the client's next transaction. That is the previous
// lease itself, emptied, when nothing can refer to it any more: it was relayed on the
// client goroutine only (no relay goroutine, which may still be exiting), it ended cleanly
// (finishLease returned its server, after its cancels in flight were answered), and it never
// armed query_timeout (whose timer may still fire). Then a transaction allocates nothing.
// Its buffers are kept; reuseBuffers has nothing to do.
func (c *clientSession) newLease() *lease {
	p := c.prevLease
	// done first: a lease that never had a relay goroutine was only ever touched by this
	// goroutine and by others under c.mu.
	if p == nil || p.done != relayDone || !p.released || p.queryTimer != nil || p == c.unrelayed {
		return &lease{}
	}
	c.mu.Lock()
	current := c.lease
	c.mu.Unlock()
	if p == current {
		return &lease{}
	}
	c.prevLease = nil
	seg, heldReplies, heldErr := p.seg[:0], p.heldReplies[:0], p.heldErr[:0]
	if cap(seg) > maxScratch {
		seg = nil
	}
	if cap(heldReplies) > maxScratch {
		heldReplies = nil
	}
	if cap(heldErr) > maxScratch {
		heldErr = nil
	}
	bound, parses, closes := reuseSlice(p.bound), reuseSlice(p.parses.items), reuseSlice(p.closes.items)
	track := reuseSlice(p.track)
	*p = lease{}
	p.seg, p.heldReplies, p.heldErr = seg, heldReplies, heldErr
	p.bound, p.parses.items, p.closes.items, p.track = bound, parses, closes, track
	return p
}

// reuseBuffers gives l the retry and reply buffers of the previous lease if its relay has
// exited (nothing touches them after that), so that they are not grown again for every
// transaction. Buffers grown past maxScratch are left to the collector.
func (c *clientSession) reuseBuffers(l *lease) {
	p := c.prevLease
	c.prevLease = l
	if p == nil {
		return
	}
	select {
	case <-p.done:
	default:
		return
	}
	if cap(p.seg) <= maxScratch {
		l.seg = p.seg[:0]
	}
	if cap(p.heldReplies) <= maxScratch {
		l.heldReplies = p.heldReplies[:0]
	}
	if cap(p.heldErr) <= maxScratch {
		l.heldErr = p.heldErr[:0]
	}
	l.bound = reuseSlice(p.bound)
	l.parses.items = reuseSlice(p.parses.items)
	l.closes.items = reuseSlice(p.closes.items)
	p.seg, p.heldReplies, p.heldErr, p.bound, p.parses.items, p.closes.items = nil, nil, nil, nil, nil, nil
}

// reuseSlice empties s for reuse, dropping the pointers it held.
func reuseSlice[T any](s []T) []T {
	if cap(s) > maxScratch/64 {
		return nil
	}
	s = s[:cap(s)]
	clear(s)
	return s[:0]
}

// claim returns the current lease with a message of type typ accounted to it, so the
// relay cannot end the lease before that message is answered; or nil with no lease.
func (c *clientSession) claim(typ byte) *lease {
	c.mu.Lock()
	for c.lease != nil && (c.lease.syncing || c.lease.ending || c.lease.restoring()) {
		c.idle.Wait()
	}
	l := c.lease
	if l != nil {
		l.account(typ)
	}
	c.mu.Unlock()
	return l
}

// account records a message sent on the lease. The caller holds clientSession.mu.
func (l *lease) account(typ byte) {
	if l.qStart == 0 {
		l.qStart = nanotime()
		if l.xStart == 0 {
			l.xStart = l.qStart
		}
	}
	switch typ {
	case 'Q', 'F':
		l.pending++
		l.sentSeq++
		l.executed = true
		// A function call by OID may be set_config or anything else.
		if typ == 'F' {
			l.untracked, l.opaque = true, true
		}
	case 'S':
		l.pending++
		l.unsynced = false
		l.sentSeq++
	case 'P', 'B', 'D', 'E', 'C', 'H':
		l.unsynced = true
		l.executed = l.executed || typ == 'E'
	}
	if l.queryTimeout > 0 && l.pending > 0 {
		// A request (or COPY data for one) is on its way: its answer is due within
		// query_timeout. endsLease clears the deadline once nothing is outstanding.
		_ = l.sc.conn.SetReadDeadline(time.Now().Add(l.queryTimeout))
	}
}

// send passes one client message, already accounted to l, to the lease's server: msg
// when it was read whole (and rewritten if it names a prepared statement), else the
// current frame, streamed.
func (c *clientSession) send(l *lease, msg []byte) error {
	out := msg
	if msg != nil && msg[0] == 'Q' {
		l.sc.unnamedOwner = nil // a simple query replaces the unnamed statement
		if c.mode != ModeSession {
			q := c.text(queryText(msg))
			t := withSettingEffects(c.srv.classifier, q, traitsOf(q))
			c.mu.Lock()
			warn := c.applyTraits(l, t)
			c.scheduleRestore(l, t.resets, l.sentSeq)
			c.mu.Unlock()
			if warn {
				c.warnSessionBound()
			}
		} else if q := c.text(queryText(msg)); q != "" {
			kind, name := router.CommandOf(q)
			if r := resetsOfQuery(q, kind, name); r != nil {
				c.mu.Lock()
				c.scheduleRestore(l, r, l.sentSeq)
				c.mu.Unlock()
			}
		}
	} else if msg != nil {
		var err error
		var warn bool
		c.mu.Lock()
		out, warn, err = c.planExtended(l, msg, c.out[:0])
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if warn {
			c.warnSessionBound()
		}
		if cap(out) <= maxScratch {
			c.out = out
		}
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	w := l.sc.w
	if out != nil {
		if _, err := w.Write(out); err != nil {
			c.log.Debug("write to server failed", "error", err)
		}
	} else if err := c.fr.Forward(w); err != nil {
		return err
	}
	// Coalesce: flush unless the client's next message is already here whole (the rest
	// of a message only partly received may be long in coming), and always when the
	// client must wait for this request's reply before sending more (scheduleRestore).
	c.unflushed = l
	if !c.fr.FrameBuffered() || c.mustWait(l) {
		c.unflushed = nil
		if err := w.Flush(); err != nil {
			// The server is gone; the relay will see it and tell the client.
			c.log.Debug("write to server failed", "error", err)
		}
	}
	return nil
}

// flushServer sends the messages send held back, before the client goroutine waits for
// their replies. The server has not seen them, so the relay cannot be ending the lease
// or writing to the server itself.
func (c *clientSession) flushServer() {
	l := c.unflushed
	if l == nil {
		return
	}
	c.unflushed = nil
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.sc.w.Flush(); err != nil {
		c.log.Debug("write to server failed", "error", err)
	}
}

// maxScratch bounds the rewrite buffer a client keeps between messages.
const maxScratch = 64 << 10

// relay copies the server's replies to the client until the lease ends.
func (c *clientSession) relay(l *lease) {
	defer close(l.done)
	c.relayLoop(l, false)
}

// relayLoop copies the server's replies to the client until the lease ends. On the client
// goroutine (inline), it returns early once the lease needs the client again, with
// everything relayed so far flushed: relayPark when the lease is idle in a transaction
// in transaction mode (the server owes nothing), relayHandOff when a relay goroutine must
// go on with the lease (COPY FROM STDIN, or a ReadyForQuery that keeps the lease in
// session mode, where the server may send notifications at any time).
func (c *clientSession) relayLoop(l *lease, inline bool) (exit relayExit) {
	holdingW := false // this goroutine holds c.wmu
	defer func() {
		if p := recover(); p != nil {
			c.relayPanicked(l, p, holdingW)
			exit = relayDoneExit
		}
	}()
	for {
		fr, err := l.sc.fr.Next()
		if err != nil {
			c.relayFailed(l, err)
			return relayDoneExit
		}
		c.wmu.Lock()
		holdingW = true
		step, status, err := c.relayOne(l, fr)
		if step == stepHidden {
			holdingW = false
			c.wmu.Unlock()
			continue
		}
		if inline && step == stepContinue && (fr.Type == 'Z' || fr.Type == 'G' || fr.Type == 'W') {
			ferr := c.w.Flush()
			holdingW = false
			c.wmu.Unlock()
			c.reportReady(l)
			if ferr != nil {
				c.clientGone(l)
				return relayDoneExit
			}
			if fr.Type == 'Z' && c.mode == ModeTransaction && c.owesNothing(l) {
				return relayPark
			}
			return relayHandOff
		}
		holdingW = false
		c.wmu.Unlock()
		c.reportReady(l)
		switch step {
		case stepContinue:
			continue
		case stepEnd:
			c.finishLease(l)
		case stepFailed:
			c.relayFailed(l, err)
		case stepClientGone:
			c.clientGone(l)
		case stepTransactionBlock:
			c.refuseTransactionBlock(l, status)
		}
		return relayDoneExit
	}
}

// relayExit is how an inline relayLoop ended.
type relayExit int

const (
	relayDoneExit relayExit = iota // the lease ended, or failed
	relayHandOff                   // a relay goroutine must go on
	relayPark                      // idle in a transaction: relay the next request inline
)

// owesNothing reports whether l is still the client's lease, with no request outstanding.
func (c *clientSession) owesNothing(l *lease) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease == l && l.pending == 0 && !l.unsynced && !l.syncing && !l.ending
}

// relayStep is what the relay does after one server message.
type relayStep int

const (
	stepContinue         relayStep = iota // keep relaying
	stepEnd                               // the lease ended cleanly: return the server
	stepFailed                            // the server failed
	stepClientGone                        // the client cannot be written to
	stepTransactionBlock                  // statement mode saw a transaction begin
	stepStop                              // already handled: just stop
	stepHidden                            // a reply to cmpool's own message, dropped: keep relaying
)

// relayOne passes one server message to the client. The caller holds c.wmu.
func (c *clientSession) relayOne(l *lease, fr protocol.Frame) (relayStep, byte, error) {
	if f := c.srv.relayFault; f != nil {
		f(fr.Type)
	}
	if !relayedTypes[fr.Type] {
		return stepFailed, 0, fmt.Errorf("%w: unexpected message type %q", errBadServerMessage, fr.Type)
	}
	if fr.BodyLen > maxServerMessage && fr.Type != 'D' && fr.Type != 'd' {
		// Rows and COPY data are streamed; other messages may be read whole.
		return stepFailed, 0, fmt.Errorf("%w: %d bytes in message of type %q", errBadServerMessage, fr.BodyLen, fr.Type)
	}
	sc := l.sc
	l.sentBytes += int64(protocol.HeaderLen + fr.BodyLen)
	c.mu.Lock()
	hidden := l.hiddenBegin
	c.mu.Unlock()
	if hidden {
		if step, handled, err := c.relayHiddenBegin(l, fr); handled {
			return step, 0, err
		}
	}
	var out []byte // a message read whole, possibly replaced; nil when streamed
	// On a replica, a statement may yet be refused with 25006 and move to the primary,
	// until its first row: so the replies that only describe it are held until then.
	if l.replica >= 0 && !l.answered && l.segOK {
		switch fr.Type {
		case '1', '2', 't', 'T', 'n':
			msg, err := sc.fr.Message()
			if err != nil {
				return stepFailed, 0, err
			}
			if fr.Type == '1' {
				msg = c.replyParseComplete(l, msg)
			}
			l.heldReplies = append(l.heldReplies, msg...)
			return stepContinue, 0, nil
		}
	}
	if len(l.heldReplies) > 0 && fr.Type != 'E' {
		if _, err := c.w.Write(l.heldReplies); err != nil {
			return stepClientGone, 0, nil
		}
		l.heldReplies = l.heldReplies[:0]
	}
	switch fr.Type {
	case 'Z':
		msg, err := sc.fr.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		if len(msg) != 6 || msg[5] != 'I' && msg[5] != 'T' && msg[5] != 'E' {
			return stepFailed, 0, fmt.Errorf("%w: malformed ReadyForQuery %q", errBadServerMessage, msg[protocol.HeaderLen:])
		}
		status := msg[5]
		if len(l.heldErr) > 0 {
			if l.toPrimary && c.replayOnPrimary(l, status) {
				return stepStop, 0, nil
			}
			if !l.toPrimary && c.retrySegment(l, status) {
				return stepContinue, 0, nil
			}
			if _, err := c.w.Write(l.heldErr); err != nil {
				return stepClientGone, 0, nil
			}
			l.heldErr = l.heldErr[:0]
			c.noteRestoreFailed(l)
		}
		if ran, err := c.restoreStartup(l); err != nil {
			if err == errClientWrite {
				return stepClientGone, 0, nil
			}
			return stepFailed, 0, err
		} else if ran {
			msg = protocol.AppendReadyForQuery(nil, status) // msg was read over
		}
		l.answered = false
		if c.mode == ModeStatement && status != 'I' {
			return stepTransactionBlock, status, nil
		}
		if _, err := c.w.Write(msg); err != nil {
			return stepClientGone, 0, nil
		}
		switch end, dead := c.endsLease(l, status); {
		case dead:
			return stepStop, 0, nil
		case end:
			return stepEnd, 0, nil
		}
	case 'S':
		msg, err := sc.fr.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		name, value, ok := protocol.ParseParameterStatus(msg[protocol.HeaderLen:])
		if !ok {
			return stepFailed, 0, fmt.Errorf("%w: malformed ParameterStatus", errBadServerMessage)
		}
		sc.noteParameterStatus(name, value)
		if c.holdStatus(l, name, value) {
			return stepContinue, 0, nil
		}
		c.noteParameterStatus(name, value)
		out = msg
	case 'C':
		msg, err := sc.fr.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		c.srv.stmts.noteCommandTag(msg[protocol.HeaderLen:])
		out = msg
	case '1', '3', 'E':
		msg, err := sc.fr.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		switch fr.Type {
		case '1':
			out = c.replyParseComplete(l, msg)
		case '3':
			out = c.replyCloseComplete(l, msg)
		default:
			c.noteServerError(l, protocol.ErrorCode(msg[protocol.HeaderLen:]))
			out = c.replyError(l, msg)
			if c.holdForRetry(l, out) {
				out = nil
				l.heldReplies = l.heldReplies[:0]
			} else {
				c.noteRestoreFailed(l)
			}
			if out != nil && len(l.heldReplies) > 0 {
				if _, err := c.w.Write(l.heldReplies); err != nil {
					return stepClientGone, 0, nil
				}
				l.heldReplies = l.heldReplies[:0]
			}
		}
	default:
		if err := sc.fr.Forward(c.w); err != nil {
			if isClientWriteErr(err) {
				return stepClientGone, 0, nil
			}
			return stepFailed, 0, err
		}
	}
	if out != nil {
		if _, err := c.w.Write(out); err != nil {
			return stepClientGone, 0, nil
		}
	}
	if out != nil || fr.Type != '1' && fr.Type != '3' && fr.Type != 'E' {
		l.answered = true
	}
	if sc.fr.Buffered() == 0 {
		if err := c.w.Flush(); err != nil {
			return stepClientGone, 0, nil
		}
	}
	return stepContinue, 0, nil
}

// errBadServerMessage is a server message that breaks the protocol: malformed, or of a
// kind no server sends in a session.
var errBadServerMessage = errors.New("invalid message from the server")

// relayedTypes are the message types a server may send once a session has begun.
var relayedTypes = func() (t [256]bool) {
	for _, typ := range []byte("123ACDEGHINSTVWZcdnst") {
		t[typ] = true
	}
	return t
}()

// maxServerMessage bounds the server messages other than DataRow and CopyData, which
// the relay may read whole: PostgreSQL's are far smaller.
const maxServerMessage = 64 << 20

// isBadServerMessage reports whether err says the server broke the protocol.
func isBadServerMessage(err error) bool {
	var fe *protocol.FrameError
	return errors.Is(err, errBadServerMessage) || errors.As(err, &fe) || errors.Is(err, protocol.ErrMessageTooLarge)
}

// clientGone ends a lease whose client can no longer be written to: the server may be
// mid-transaction or mid-result, so it is destroyed, and the client is closed.
func (c *clientSession) clientGone(l *lease) {
	c.mu.Lock()
	l.abandoned = true
	c.mu.Unlock()
	c.destroyLease(l)
	_ = c.conn.Close()
}

// destroyLease ends l by closing its server, which may be in any state.
func (c *clientSession) destroyLease(l *lease) {
	c.flushBytes(l)
	if l.queryTimer != nil {
		l.queryTimer.Stop()
	}
	c.mu.Lock()
	if c.lease == l {
		c.lease = nil
	}
	l.destroyed = true
	c.idle.Broadcast()
	c.mu.Unlock()
	l.res.Destroy()
}

// isClientWriteErr tells a failed write to the client (ignored: the client goroutine will
// see the close) from a failed read from the server.
func isClientWriteErr(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "write"
}

// serverOnlyParams are reported parameters that describe the server and cannot be set:
// they are passed to the client but never become its settings. in_hot_standby changes
// when a replica is promoted under a session.
var serverOnlyParams = map[string]bool{
	"in_hot_standby": true, "integer_datetimes": true, "is_superuser": true,
	"server_encoding": true, "server_version": true,
}

// noteParameterStatus keeps a parameter the server reported as the client's own.
func (c *clientSession) noteParameterStatus(name, value string) {
	if serverOnlyParams[name] {
		return
	}
	c.mu.Lock()
	if c.params[name] != value {
		c.params[name] = value
		c.paramsVersion++
	}
	l := c.lease
	c.mu.Unlock()
	if l != nil {
		l.sc.configuredFor, l.sc.configuredVersion = c, c.paramsVersion
	}
}

// endsLease runs at each ReadyForQuery, after it was written to the client. It decides
// whether the server goes back to the pool: only when it is idle, every request has been
// answered and the mode allows it. The client's output is flushed before the lease ends,
// since after that the client goroutine may write to the client.
func (c *clientSession) endsLease(l *lease, status byte) (end, dead bool) {
	c.mu.Lock()
	l.sc.txStatus = status
	l.recvSeq++
	if l.pending > 0 {
		l.pending--
	}
	c.noteReady(l, status)
	if l.pending == 0 && !l.unsynced {
		l.stopQueryTimer()
		c.armIdleTimeout(status != 'I')
	}
	if len(l.bound) > 0 {
		l.bound = trimBound(l.bound, l.recvSeq)
	}
	if l.queryTimeout > 0 && l.pending == 0 {
		// Idle, or idle in a transaction: the server owes nothing.
		_ = l.sc.conn.SetReadDeadline(time.Time{})
	}
	c.idle.Broadcast()
	ends := l.pending == 0 && !l.unsynced && status == 'I' && (c.mode != ModeSession || c.closing.Load())
	if ends {
		// The client's next message must not join this lease: it may belong elsewhere.
		l.ending = true
	}
	c.mu.Unlock()
	if !ends {
		return false, false
	}
	ferr := c.w.Flush()
	c.mu.Lock()
	l.ending = false
	c.idle.Broadcast()
	if ferr != nil {
		c.mu.Unlock()
		c.clientGone(l)
		return false, true
	}
	if c.lease != l {
		c.mu.Unlock()
		return false, false // the client left meanwhile (endLease took over)
	}
	c.routeOnce = ""
	if !l.executed {
		l.needLSN = false // only Parse, Describe or Close: nothing ran, nothing was written
	}
	if l.needLSN {
		c.noteWriteLocked()
	}
	if len(l.track) > 0 || c.mode != ModeSession && c.untrackedChanges(l) {
		// The lease ends after syncLease has read the parameters back.
		l.syncing = true
	} else {
		c.lease = nil
	}
	c.idleSince.Store(nanotime())
	if c.closing.Load() {
		// Wake the client goroutine so it can say goodbye.
		_ = c.conn.SetReadDeadline(time.Now())
	}
	c.mu.Unlock()
	return true, false
}

// finishLease returns a clean server once no write or cancel is in progress on it. The
// lease is no longer cancellable (it is not the client's, or it is syncing), so no new
// cancel starts meanwhile; a server whose cancel is not answered is closed.
func (c *clientSession) finishLease(l *lease) {
	l.wmu.Lock()
	//lint:ignore SA2001 waiting for the writer to finish is the point
	l.wmu.Unlock()
	settled := l.sc.cancels.settle(settleTimeout)
	if l.replica >= 0 {
		l.rs.Done(l.replica)
	}
	if l.syncing && !c.syncLease(l) || !settled {
		l.res.Destroy()
		return
	}
	if l.resetNeeded && !resetServer(l.sc, c.srv.conf().ServerConnectTimeout) {
		l.res.Destroy()
		return
	}
	if l.tempCheck && !l.resetNeeded && c.mode != ModeSession && !c.dropTempObjects(l) {
		l.res.Destroy()
		return
	}
	if c.mode == ModeSession && c.srv.conf().ServerResetQuery != "-" {
		ctx, cancel := context.WithTimeout(context.Background(), c.srv.conf().ServerConnectTimeout)
		res, err := l.sc.exec(ctx, c.srv.conf().ServerResetQuery)
		cancel()
		if err != nil || res.err != nil || l.sc.txStatus != 'I' {
			l.res.Destroy()
			return
		}
		l.sc.set = make(map[string]string)
		l.sc.configuredFor = nil
		l.sc.prepared.clear()
		l.sc.unnamedOwner = nil
	}
	l.pool.release(l.res)
	l.released = true
}

// refuseTransactionBlock handles a transaction left open in statement mode. The
// ReadyForQuery is withheld; the server is rolled back and the client gets an error and an
// idle ReadyForQuery. If more requests are queued behind this one, both ends are closed.
func (c *clientSession) refuseTransactionBlock(l *lease, status byte) {
	pe := protocol.NewError(protocol.CodeFeatureNotSupported, "transaction blocks are not allowed in statement pooling mode")
	pe.Hint = "use pool_mode = transaction for this database, or run each statement on its own"
	c.mu.Lock()
	l.sc.txStatus = status
	l.recvSeq++
	if l.pending > 0 {
		l.pending--
	}
	last := l.pending == 0 && !l.unsynced
	c.idle.Broadcast()
	c.mu.Unlock()
	if !last {
		pe.Severity = protocol.SeverityFatal
		c.relayFailedWith(l, pe)
		return
	}
	l.wmu.Lock()
	res, err := l.sc.exec(context.Background(), "ROLLBACK")
	l.wmu.Unlock()
	c.wmu.Lock()
	_, _ = c.w.Write(protocol.AppendErrorResponse(nil, pe))
	_, _ = c.w.Write(protocol.AppendReadyForQuery(nil, 'I'))
	werr := c.w.Flush()
	c.wmu.Unlock()
	if werr != nil {
		c.clientGone(l)
		return
	}
	c.mu.Lock()
	if l.pending > 0 || l.unsynced || c.lease != l {
		// The client sent more while we rolled back: it cannot be told apart safely.
		c.mu.Unlock()
		pe.Severity = protocol.SeverityFatal
		c.relayFailedWith(l, pe)
		return
	}
	c.lease = nil
	c.mu.Unlock()
	if err != nil || res.err != nil || l.sc.txStatus != 'I' {
		l.destroyed = true
		l.res.Destroy()
		return
	}
	c.finishLease(l)
}

// relayFailed ends a lease whose server failed or was closed under it.
func (c *clientSession) relayFailed(l *lease, err error) {
	c.mu.Lock()
	abandoned, stopping := l.abandoned, l.stopping
	c.mu.Unlock()
	if stopping && isTimeout(err) {
		// The client goroutine stopped us to take the server back itself.
		return
	}
	if l.queryTimeout > 0 && isTimeout(err) {
		// The server may be hung or unreachable; its state is unknown, so it is closed,
		// and so is the client, whose transaction is gone with it.
		c.log.Warn("query_timeout: server did not answer, even to a cancel request", "waited", l.queryTimeout, "backend", l.pool.key.backend)
		c.relayFailedWith(l, protocol.NewFatal(protocol.CodeQueryCanceled,
			fmt.Sprintf("query_timeout: the server did not answer within %s", l.queryTimeout)))
		return
	}
	if isBadServerMessage(err) {
		c.log.Error("server broke the protocol: closing it and its client", "error", err)
		c.relayFailedWith(l, protocol.NewFatal(protocol.CodeProtocolViolation, "server sent an invalid message: "+err.Error()))
		return
	}
	if !abandoned {
		c.log.Warn("server connection lost", "error", err)
	}
	c.relayFailedWith(l, protocol.NewFatal(protocol.CodeConnectionFailure, "server connection lost: "+err.Error()))
}

// relayFailedWith destroys the lease's server and, unless the client already left, sends
// it pe and closes it. The error is written while the relay still owns the client writer.
func (c *clientSession) relayFailedWith(l *lease, pe *protocol.Error) {
	c.mu.Lock()
	abandoned := l.abandoned
	c.mu.Unlock()
	if !abandoned {
		c.wmu.Lock()
		_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.w.Write(protocol.AppendErrorResponse(nil, pe))
		_ = c.w.Flush()
		c.wmu.Unlock()
	}
	c.destroyLease(l)
	if !abandoned {
		_ = c.conn.Close()
	}
}

// endLease runs when the client leaves: a clean server goes back (session mode, after
// the reset query); a busy one is closed, never reused dirty.
func (c *clientSession) endLease() {
	c.ensureRelay() // it stops the relay below, or sees the server closed
	c.mu.Lock()
	l := c.lease
	if l == nil {
		c.mu.Unlock()
		return
	}
	if l.syncing {
		// The relay is ending this lease itself (reading parameters back, or moving the
		// request to the primary): let it, then look again.
		c.mu.Unlock()
		<-l.done
		c.endLease()
		return
	}
	c.lease = nil
	clean := l.pending == 0 && !l.unsynced && l.sc.txStatus == 'I'
	if clean {
		l.stopping = true
		_ = l.sc.conn.SetReadDeadline(time.Now())
	} else {
		l.abandoned = true
		_ = l.sc.conn.Close()
	}
	c.mu.Unlock()
	<-l.done
	if clean && !l.destroyed {
		_ = l.sc.conn.SetReadDeadline(time.Time{})
		c.finishLease(l)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
