package pool

import (
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/cmlite/cmpool/router"
)

// Stat is a snapshot of a Server.
type Stat struct {
	// Clients is the number of client connections open now.
	Clients int
	// PreparedStatements is the number of distinct statements (text and parameter types)
	// that clients have prepared, each with one server-side name.
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
	// LoginFailures counts logins with a wrong password or an unknown user;
	// LoginsRefused counts logins refused by rules (reject, no TLS, too many failures).
	LoginFailures, LoginsRefused int64
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
	// for, and WaitTime is the time spent waiting.
	Acquires, Waits int64
	WaitTime        time.Duration
	// ClientParses counts Parse messages from clients; ServerParses counts Parses sent to
	// servers (first preparations and replays); Binds counts Bind messages.
	ClientParses, ServerParses, Binds int64
}

// poolCounters are a pool's prepared-statement counters.
type poolCounters struct {
	clientParses, serverParses, binds atomic.Int64
}

// Stat returns a snapshot of the server's pools.
func (s *Server) Stat() Stat {
	s.mu.Lock()
	pools := make([]*backendPool, 0, len(s.pools))
	for _, bp := range s.pools {
		pools = append(pools, bp)
	}
	s.mu.Unlock()
	st := Stat{
		Clients:            int(s.nClients.Load()),
		PreparedStatements: s.stmts.Len(),
		ReadsOnPrimary:     s.routedPrimaryFallback.Load(),
		ReadOnlyReplays:    s.readOnlyReplays.Load(),
		Promotions:         s.promotions.Load(),
		ReadWaits:          s.readWaits.Load(),
		LoginFailures:      s.auth.failures.Load(),
		LoginsRefused:      s.auth.refusals.Load(),
	}
	if s.replicas != nil {
		st.Replicas = s.replicas.Snapshot()
	}
	for _, bp := range pools {
		ps := bp.p.Stat()
		backend := "primary"
		if bp.key.backend > backendPrimary {
			backend = fmt.Sprintf("%s:%d", bp.connCfg.Host, bp.connCfg.Port)
		}
		st.Pools = append(st.Pools, PoolStat{
			Database:      bp.key.database,
			User:          bp.key.user,
			Backend:       backend,
			Mode:          bp.mode,
			Servers:       int(ps.TotalResources()),
			IdleServers:   int(ps.IdleResources()),
			ActiveServers: int(ps.AcquiredResources()),
			MaxServers:    int(ps.MaxResources()),
			Acquires:      ps.AcquireCount(),
			Waits:         ps.EmptyAcquireCount(),
			WaitTime:      ps.EmptyAcquireWaitTime(),
			ClientParses:  bp.counters.clientParses.Load(),
			ServerParses:  bp.counters.serverParses.Load(),
			Binds:         bp.counters.binds.Load(),
		})
	}
	sort.Slice(st.Pools, func(i, j int) bool {
		a, b := st.Pools[i], st.Pools[j]
		if a.Database != b.Database {
			return a.Database < b.Database
		}
		if a.User != b.User {
			return a.User < b.User
		}
		return a.Backend < b.Backend
	})
	return st
}
