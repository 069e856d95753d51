package pool

import (
	"time"

	"github.com/cmlite/cmpool/router"
)

// Stat is a snapshot of a Server.
type Stat struct {
	// Clients is the number of client connections open now.
	Clients int
	// ParkedClients are those of Clients that are idle with no goroutine: suspended between
	// requests on an event loop (Config.EventLoops), or, with the loops off, parked in the
	// epoll set of idle clients (Config.ParkIdleAfter).
	ParkedClients int
	// EventLoops are the event loops' counters (Config.EventLoops); zero without them.
	EventLoops EventLoopStat
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
	// ReadReplays counts reads whose replica failed under them before they had answered
	// anything, run again on another replica or on the primary.
	ReadReplays int64
	// ReadWaits counts reads that waited (up to rw_wait) for a replica to replay the
	// writes they must see.
	ReadWaits int64
	// ReadsNotWaited counts reads that went to the primary at once, without waiting,
	// because the writes they must see were not flushed on the primary yet (with
	// synchronous_commit = off): no replica could have them within rw_wait. They are
	// also in ReadsOnPrimary.
	ReadsNotWaited int64
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
	// Pinned clients keep their server past the transaction for session state that
	// cannot follow them (advisory locks, temporary tables, WITH HOLD cursors); MaxPinned
	// is the pool's max_pinned, and PinRefused counts statements refused because it was
	// reached. All zero without session pinning.
	Pinned, MaxPinned int
	PinRefused        int64
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

// EventLoopStat counts what the event loops did (pool/loops.go).
type EventLoopStat struct {
	// Loops is how many run; 0 when they are off.
	Loops int
	// Events counts socket events the loops handled: each ran a session from where it
	// waited.
	Events uint64
	// Detached counts loop workers that left their loop to a new goroutine because the
	// session they ran was about to block (waiting for a server, a socket full or empty
	// mid-message); Watchdog counts those the watchdog detached, held for milliseconds by a
	// wait nobody announced.
	Detached, Watchdog uint64
	// ServerWaits counts waits for a server that sessions on the loops took as claims,
	// without a goroutine (claim.go). Of those that ended, ServerWaitsHanded ended with a
	// server handed over by the session that gave it back, ServerWaitsOther otherwise
	// (query_wait_timeout, KILL_CLIENT, a server closed instead of given back, the pool
	// closed).
	ServerWaits, ServerWaitsHanded, ServerWaitsOther uint64
	// Idle is how many clients wait between requests on the loops now, without a goroutine
	// (counted in ParkedClients too). Those idle for park_idle_after leave the loops for
	// the park set.
	Idle int
}

// Stat returns a snapshot of the server's pools.
func (s *Server) Stat() Stat {
	snap := s.snapshot(0)
	st := Stat{
		Clients:            int(s.nClients.Load()),
		ParkedClients:      s.parker.Len() + int(s.loopIdle.Load()),
		EventLoops:         s.loopStat(),
		PreparedStatements: s.stmts.Len(),
		Replicas:           snap.Replicas,
		ReadsOnPrimary:     s.routedPrimaryFallback.Load(),
		ReadOnlyReplays:    s.readOnlyReplays.Load(),
		Promotions:         s.promotions.Load(),
		ReadReplays:        s.readReplays.Load(),
		ReadWaits:          s.readWaits.Load(),
		ReadsNotWaited:     s.readsNotWaited.Load(),
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
		cg := ClientGroupStat{Database: g.Database, User: g.User,
			Active: g.Active, Waiting: g.Waiting, MaxWait: g.MaxWait}
		if pg := s.pinGroup(g.Database, g.User); pg != nil {
			cg.Pinned, cg.MaxPinned, cg.PinRefused = pg.Pinned(), pg.Max(), pg.Refused()
		}
		st.ClientGroups = append(st.ClientGroups, cg)
	}
	return st
}
