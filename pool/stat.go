package pool

import (
	"sync/atomic"
	"time"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Stat is a snapshot of a Server.
type Stat struct {
	// Clients is the number of client connections open now.
	Clients int
	// PreparedStatements is the number of distinct statements (text and parameter types)
	// that clients have prepared, each with one server-side name, and that a client or a
	// server still holds (statements dropped everywhere leave at the next collection).
	PreparedStatements int
	// Pools has one entry per (database, user, backend) pool, sorted by database, user
	// and backend.
	Pools []PoolStat
	// Replicas describes each configured replica; empty without replicas.
	Replicas []router.ReplicaStatus
	// ReadsOnPrimary counts reads that went to the primary for want of a usable,
	// caught-up replica; ReadOnlyReplays counts requests a replica refused with 25006
	// that were run again on the primary.
	ReadsOnPrimary, ReadOnlyReplays int64
	// Promotions counts replicas that became the primary and that cmpool followed.
	Promotions int64
	// ReadWaits counts reads that waited (up to rw_wait) for a replica to replay the
	// writes they must see.
	ReadWaits int64
	// WritePositionReads counts reads of the primary's WAL position for read-your-writes
	// by the current replica set: one per read that follows a write, shared by the reads
	// waiting at the same time; none for a write that no read follows.
	WritePositionReads int64
	// RoutedPrimary counts transactions sent to the primary while replicas are
	// configured (each replica's count is in Replicas).
	RoutedPrimary int64
	// ClientGroups has the logged-in clients by (database, user), sorted.
	ClientGroups []ClientGroupStat
	// Errors counts ErrorResponses sent to clients by SQLSTATE class ("57", "08", …).
	Errors map[string]int64
	// Paused lists the paused databases ("*" for PAUSE of everything).
	Paused []string
	// ShuttingDown is set once Shutdown has begun.
	ShuttingDown bool
	// LoginFailures counts logins with a wrong password or an unknown user;
	// LoginsRefused counts logins refused by rules (reject, no TLS, too many failures).
	LoginFailures, LoginsRefused int64
}

// ClientGroupStat counts the clients of one (database, user).
type ClientGroupStat struct {
	Database, User string
	// Active clients are logged in and not waiting; Waiting ones wait for a server
	// (or for RESUME); MaxWait is how long the oldest of them has waited.
	Active, Waiting int
	MaxWait         time.Duration
}

// PoolStat describes one pool of server connections.
type PoolStat struct {
	Database string
	User     string
	// Backend is "primary", or the replica's host:port.
	Backend string
	Mode    Mode
	// Server connections: open in all, idle, lent to a client, and the most allowed.
	Servers, IdleServers, ActiveServers, MaxServers int
	// Acquires counts server connections lent; Waits counts those a client had to wait
	// for, and WaitTime is the time clients spent waiting.
	Acquires, Waits int64
	WaitTime        time.Duration
	// Transactions and Queries (requests) answered, with their total durations, and the
	// bytes received from and sent to clients.
	Transactions, Queries      int64
	TransactionTime, QueryTime time.Duration
	BytesReceived, BytesSent   int64
	// ClientParses counts Parse messages from clients; ServerParses counts Parses sent to
	// servers (first preparations and replays); Binds counts Bind messages.
	ClientParses, ServerParses, Binds int64
	// Cancel requests in progress now: clients' requests not yet sent to a server
	// (CancelsWaiting) and sent but not yet answered (CancelsActive); connections open to
	// send a cancel, clients' or query_timeout's (CancelConns); servers with a cancel in
	// flight, not lent to anyone until it is answered (ServersBeingCanceled). All zero
	// for a pool replaced by a reload or a promotion.
	CancelsWaiting, CancelsActive, CancelConns, ServersBeingCanceled int
}

// poolCounters are a pool's counters, added to as leases progress.
type poolCounters struct {
	clientParses, serverParses, binds atomic.Int64
	// Requests answered and transactions ended, and their total durations (ns).
	queries, xacts      atomic.Int64
	queryTime, xactTime atomic.Int64
	received, sent      atomic.Int64 // bytes from and to clients
	waitTime, waits     atomic.Int64 // clients' waits for a server (ns), and their count
	cancels             cancelCounters
}

// Stat returns a snapshot of the server's pools.
func (s *Server) Stat() Stat {
	snap := s.snapshot(0)
	st := Stat{
		Clients:            int(s.nClients.Load()),
		PreparedStatements: s.stmts.Len(),
		Replicas:           snap.Replicas,
		ReadsOnPrimary:     s.routedPrimaryFallback.Load(),
		ReadOnlyReplays:    s.readOnlyReplays.Load(),
		Promotions:         s.promotions.Load(),
		ReadWaits:          s.readWaits.Load(),
		RoutedPrimary:      s.routedPrimary.Load(),
		Errors:             s.errors.snapshot(),
		ShuttingDown:       snap.ShuttingDown,
		LoginFailures:      s.authn().Failures(),
		LoginsRefused:      s.authn().Refusals(),
	}
	if rs := s.rs(); rs != nil {
		st.WritePositionReads = rs.PrimaryLSNReads()
	}
	if snap.PausedAll {
		st.Paused = append(st.Paused, "*")
	}
	st.Paused = append(st.Paused, snap.Paused...)
	for _, p := range snap.Pools { // sorted by database, user and backend
		t := p.Totals
		st.Pools = append(st.Pools, PoolStat{
			Database: p.Database, User: p.User, Backend: p.Backend, Mode: Mode(p.Mode),
			Servers: p.Servers, IdleServers: p.Idle, ActiveServers: p.Active, MaxServers: p.Max,
			Acquires: t.Assignments, Waits: t.Waits, WaitTime: time.Duration(t.WaitTime),
			Transactions: t.Xacts, Queries: t.Queries,
			TransactionTime: time.Duration(t.XactTime), QueryTime: time.Duration(t.QueryTime),
			BytesReceived: t.Received, BytesSent: t.Sent,
			ClientParses: t.ClientParses, ServerParses: t.ServerParses, Binds: t.Binds,
			CancelsWaiting: p.CancelsWaiting, CancelsActive: p.CancelsActive, CancelConns: p.CancelConns,
			ServersBeingCanceled: p.BeingCanceled,
		})
	}
	for _, g := range snap.ClientGroups() { // sorted by database and user
		st.ClientGroups = append(st.ClientGroups, ClientGroupStat{Database: g.Database, User: g.User,
			Active: g.Active, Waiting: g.Waiting, MaxWait: g.MaxWait})
	}
	return st
}

// noteReady counts the request a ReadyForQuery answered and, at status idle, the
// transaction it ended. The caller holds c.mu; l.pending is already decremented. What
// the Observer and the log are to hear of is kept in l.ready, for reportReady once the
// relay holds no lock: a hook may block or call back into cmpool.
func (c *clientSession) noteReady(l *lease, status byte) {
	now := nanotime()
	bp := l.pool
	l.ready.backend = bp.name
	if l.qStart != 0 {
		d := now - l.qStart
		bp.counters.queries.Add(1)
		bp.counters.queryTime.Add(d)
		l.ready.query, l.ready.hasQuery = time.Duration(d), true
		l.qStart = 0
		if l.pending > 0 {
			l.qStart = now // the next pipelined request is running now
		}
	}
	if status == 'I' && l.xStart != 0 {
		d := now - l.xStart
		bp.counters.xacts.Add(1)
		bp.counters.xactTime.Add(d)
		l.ready.xact, l.ready.hasXact = time.Duration(d), true
		l.xStart = l.qStart
	}
	c.flushBytes(l)
}

// readyNote is what the relay saw and has not reported yet: the durations of the
// request and of the transaction that ended, on backend (noteReady), and the SQLSTATE
// of an ErrorResponse from the server (noteServerError).
type readyNote struct {
	backend           string
	query, xact       time.Duration
	hasQuery, hasXact bool
	errCode           string
}

// reportReady sends what noteReady saw on l to the Observer, and logs a slow
// transaction. It runs on whatever relays l, holding no lock.
func (c *clientSession) reportReady(l *lease) {
	n := l.ready
	if !n.hasQuery && !n.hasXact && n.errCode == "" {
		return
	}
	l.ready = readyNote{}
	if n.errCode != "" {
		c.srv.observer.Observe(Event{Kind: EventError, Database: c.database, User: c.user, Backend: l.pool.name, Code: n.errCode})
	}
	if n.hasQuery {
		c.srv.observer.Observe(Event{Kind: EventQuery, Database: c.database, User: c.user, Backend: n.backend, Duration: n.query})
	}
	if n.hasXact {
		c.srv.observer.Observe(Event{Kind: EventTransaction, Database: c.database, User: c.user, Backend: n.backend, Duration: n.xact})
		if slow := c.srv.conf().SlowTransaction; slow > 0 && n.xact > slow {
			c.log.Warn("slow transaction", "duration", n.xact.Round(time.Microsecond), "backend", n.backend)
		}
	}
}

// flushBytes adds the bytes l relayed to its pool's counters. It runs on the relay
// goroutine, which owns l.sentBytes.
func (c *clientSession) flushBytes(l *lease) {
	if n := l.recvBytes.Swap(0); n > 0 {
		l.pool.counters.received.Add(n)
	}
	if l.sentBytes > 0 {
		l.pool.counters.sent.Add(l.sentBytes)
		l.sentBytes = 0
	}
}

// noteError counts an ErrorResponse sent to the client with SQLSTATE code. bp is the
// pool whose server raised it, or nil for cmpool's own errors.
func (c *clientSession) noteError(bp *backendPool, code string) {
	if code == "" {
		code = protocol.CodeInternalError
	}
	c.srv.errors.add(code)
	backend := ""
	if bp != nil {
		backend = bp.name
	}
	c.srv.observer.Observe(Event{Kind: EventError, Database: c.database, User: c.user, Backend: backend, Code: code})
}

// noteServerError counts an ErrorResponse from l's server on its way to the client. The
// relay calls it holding c.wmu: the Observer hears of it from reportReady.
func (c *clientSession) noteServerError(l *lease, code string) {
	if code == "" {
		code = protocol.CodeInternalError
	}
	c.srv.errors.add(code)
	l.ready.errCode = code
}

// noteWait counts a client's wait of d for a server of bp.
func (c *clientSession) noteWait(bp *backendPool, d time.Duration) {
	bp.counters.waits.Add(1)
	bp.counters.waitTime.Add(int64(d))
	c.srv.observer.Observe(Event{Kind: EventWait, Database: c.database, User: c.user, Backend: bp.name, Duration: d})
}
