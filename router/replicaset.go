package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Balance is how Pick chooses among the usable replicas.
type Balance string

// Balancing policies.
const (
	// BalanceRoundRobin takes the usable replicas in turn. It is the default.
	BalanceRoundRobin Balance = "round_robin"
	// BalanceRandom takes a usable replica at random.
	BalanceRandom Balance = "random"
	// BalanceLeastOutstanding takes the usable replica with the fewest picks not yet Done;
	// ties go round robin.
	BalanceLeastOutstanding Balance = "least_outstanding"
)

// Roles of a replica in ReplicaStatus.Role.
const (
	RoleReplica = "replica" // in recovery: pg_is_in_recovery() is true
	RolePrimary = "primary" // promoted: pg_is_in_recovery() is false; never picked
)

// States of a replica in ReplicaStatus.State.
const (
	ReplicaOK      = "ok"      // usable
	ReplicaBanned  = "banned"  // a check or a connection failed; see BannedUntil and LastError
	ReplicaLagging = "lagging" // healthy, but further behind the primary than MaxLagBytes or MaxLagTime
	ReplicaUnknown = "unknown" // not checked yet
)

// Defaults for the zero values of ReplicaSetConfig.
const (
	DefaultCheckInterval = time.Second
	DefaultCheckTimeout  = 2 * time.Second
	DefaultBanTime       = 5 * time.Second
)

const (
	// maxBanShift caps the doubling of the ban: at most BanTime << 3 = 8 * BanTime.
	maxBanShift = 3
	// waitPollInterval is how often the monitor re-reads the replicas' replay positions while
	// a WaitFor call is waiting.
	waitPollInterval = 5 * time.Millisecond
	// monitorApplicationName is the application_name of the monitoring connections.
	monitorApplicationName = "cmpool monitor"
)

// The check queries. Both return one row of text columns.
const (
	primaryCheckSQL = "select pg_current_wal_lsn()::text, pg_is_in_recovery()"
	replicaCheckSQL = "select pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text,''), " +
		"coalesce(pg_last_wal_receive_lsn()::text,''), " +
		"coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), -1)"
)

// ReplicaSetConfig configures a ReplicaSet. Only Primary is required.
type ReplicaSetConfig struct {
	// Primary is the primary's connection URL or keyword/value DSN. The monitor reads its WAL
	// position, against which the replicas' lag is measured. Required.
	Primary string
	// Replicas are the replicas' connection URLs or DSNs. A replica's index in Pick, Done, Ban,
	// OnPromotion and Snapshot is its index here. None means Pick never finds one.
	Replicas []string

	// CheckInterval is how often each node is checked. Zero means DefaultCheckInterval (1s).
	CheckInterval time.Duration
	// CheckTimeout bounds one check of one node, connecting included. Zero means
	// DefaultCheckTimeout (2s).
	CheckTimeout time.Duration

	// MaxLagBytes skips a replica whose replay position is more than this many bytes behind
	// the primary's WAL position. Zero means no byte limit.
	MaxLagBytes int64
	// MaxLagTime skips a replica that is behind the primary and whose last replayed commit is
	// older than this. Zero means no time limit.
	MaxLagTime time.Duration

	// BanTime is how long a replica is left out after a failed check or a Ban. Consecutive
	// failures double it, up to 8 * BanTime. Zero means DefaultBanTime (5s).
	BanTime time.Duration

	// Balance is the policy of Pick. Empty means BalanceRoundRobin.
	Balance Balance

	// Logger receives bans, recoveries, lag and promotions. Nil means slog.Default().
	Logger *slog.Logger

	// OnPromotion, if set, is called with a replica's index when that replica reports
	// pg_is_in_recovery() = false, once per promotion. It runs on the goroutine that ran the
	// check (the monitor's, or CheckNow's caller), after the new state is published; it must
	// not call Close. Nil means no call.
	OnPromotion func(index int)
}

// ReplicaStatus is one replica's state in a Snapshot.
type ReplicaStatus struct {
	Index int    // index in ReplicaSetConfig.Replicas
	Host  string // "host:port"
	Role  string // RoleReplica, or RolePrimary once promoted
	State string // ReplicaOK, ReplicaBanned, ReplicaLagging or ReplicaUnknown

	LagBytes   int64         // primary WAL position - ReplayLSN, at the last check; 0 if not behind
	LagTime    time.Duration // age of the last replayed commit while behind, at the last check; 0 if not behind
	ReplayLSN  LSN           // pg_last_wal_replay_lsn() at the last successful check
	ReceiveLSN LSN           // pg_last_wal_receive_lsn() at the last successful check

	Routed      int64     // Picks of this replica so far
	Outstanding int64     // Picks not yet Done
	LastError   string    // the error behind the current ban; empty once the replica is back
	BannedUntil time.Time // end of the current or last ban; zero if never banned
}

// ReplicaSet watches a primary and its replicas: their health, their replication lag and
// their role, and picks a replica for each read. Pick, Done, WaitFor, PrimaryLSN, Ban and
// Snapshot are safe for concurrent use.
//
// One monitor goroutine checks every node each CheckInterval on its own connection. A failed
// check bans the replica for BanTime, doubling on each consecutive failure up to 8x; a banned
// replica is not checked again before its ban ends, and the first successful check after that
// brings it back. The usable replicas (checked, in recovery, not banned, not lagging) are
// published as an immutable view, so that Pick reads one atomic pointer and allocates
// nothing.
type ReplicaSet struct {
	cfg      ReplicaSetConfig // defaults filled in
	log      *slog.Logger
	primary  monitoredNode
	replicas []*replica

	view       atomic.Pointer[replicaView] // the usable replicas; replaced, never changed
	next       atomic.Uint64               // round-robin counter of Pick
	primaryLSN atomic.Uint64               // latest pg_current_wal_lsn() of the primary
	waiters    atomic.Int64                // WaitFor calls waiting
	wake       chan struct{}               // 1-buffered: a WaitFor asks the monitor for a check of the replicas

	ctx    context.Context // ended by Close: aborts the monitor's checks in flight
	cancel context.CancelFunc

	lifeMu  sync.Mutex // guards started and stopped
	started bool
	stopped bool
	done    chan struct{} // closed when the monitor goroutine ends

	checkMu sync.Mutex // serializes check rounds; guards the monitoring connections, the replicas' due and res, and closed
	closed  bool

	// PrimaryLSNAfter's reads: its own connection to the primary, so that they never wait
	// for a check round.
	lsnConnMu sync.Mutex    // guards lsnNode's connection
	lsnNode   monitoredNode // the primary, for PrimaryLSNAfter
	lsnMu     sync.Mutex    // guards the fields below
	lsnCall   *lsnCall      // the read in flight, if any
	lsnLast   LSN           // the newest position read
	lsnLastAt time.Time     // when the read of lsnLast was sent; zero before the first
	lsnClosed bool
	lsnReads  atomic.Int64 // reads sent

	// lsnFlushed is the newest primary flush position read with a PrimaryLSNAfter
	// position (see CanArrive). Guarded by lsnMu.
	lsnFlushed LSN

	mu                sync.Mutex // guards the replicas' check state, the fields below and the publication of views
	primaryLSNAt      time.Time  // when the round that read primaryLSN began
	primaryFailing    bool
	primaryInRecovery bool
	primaryChecked    bool      // a primary check has ended
	primaryErr        string    // the error of the failing primary's last check
	primaryDownSince  time.Time // when the primary's checks began to fail; zero while it answers
}

// States of the primary in PrimaryStatus.State.
const (
	PrimaryOK         = "ok"          // the last check succeeded
	PrimaryDown       = "down"        // the last check failed; see LastError and DownSince
	PrimaryInRecovery = "in_recovery" // it answers, but pg_is_in_recovery() is true: it takes no writes
	PrimaryUnknown    = "unknown"     // not checked yet
)

// PrimaryStatus is the monitor's view of the primary (ReplicaSetConfig.Primary).
type PrimaryStatus struct {
	Host  string // "host:port"
	State string // PrimaryOK, PrimaryDown, PrimaryInRecovery or PrimaryUnknown
	// LastError is the error of the last check while down; DownSince is when the checks
	// began to fail (zero while it answers).
	LastError string
	DownSince time.Time
}

// replica is one replica of the set.
type replica struct {
	monitoredNode
	index int

	routed      atomic.Int64
	outstanding atomic.Int64

	// Guarded by ReplicaSet.checkMu: the check of the current round.
	due bool
	res replicaCheck

	// Guarded by ReplicaSet.mu.
	role        string
	state       string
	failures    int // consecutive failed checks and bans
	bannedUntil time.Time
	lastErr     string
	replayLSN   LSN
	receiveLSN  LSN
	lagBytes    int64
	lagTime     time.Duration
	caughtUpAt  time.Time // the last time the replica was seen caught up with the primary; zero if unknown
}

// replicaView is a published, immutable list of the usable replicas.
type replicaView struct {
	usable  []usableReplica
	changed chan struct{} // closed when a newer view replaces this one
	closed  bool          // the set is closed: nothing will be usable again
}

// usableReplica is a replica in a view, with its replay position when the view was made.
type usableReplica struct {
	r      *replica
	replay LSN
}

// NewReplicaSet validates cfg, fills its defaults and returns a ReplicaSet that has not
// connected anywhere yet. Call Start to begin monitoring (or CheckNow to check once), and
// Close to stop.
func NewReplicaSet(cfg ReplicaSetConfig) (*ReplicaSet, error) {
	if cfg.Primary == "" {
		return nil, errors.New("router: replica set: no primary")
	}
	if cfg.CheckInterval < 0 || cfg.CheckTimeout < 0 || cfg.BanTime < 0 || cfg.MaxLagTime < 0 || cfg.MaxLagBytes < 0 {
		return nil, errors.New("router: replica set: negative interval, timeout, ban time or lag limit")
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.BanTime == 0 {
		cfg.BanTime = DefaultBanTime
	}
	switch cfg.Balance {
	case "":
		cfg.Balance = BalanceRoundRobin
	case BalanceRoundRobin, BalanceRandom, BalanceLeastOutstanding:
	default:
		return nil, fmt.Errorf("router: replica set: unknown balance %q (want %q, %q or %q)",
			cfg.Balance, BalanceRoundRobin, BalanceRandom, BalanceLeastOutstanding)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Replicas = slices.Clone(cfg.Replicas)

	rs := &ReplicaSet{
		cfg:  cfg,
		log:  cfg.Logger,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	var err error
	if rs.primary, err = newMonitoredNode(cfg.Primary, cfg.CheckTimeout, false); err != nil {
		return nil, fmt.Errorf("router: replica set: primary: %w", err)
	}
	rs.lsnNode = monitoredNode{host: rs.primary.host, config: rs.primary.config.Copy()}
	for i, url := range cfg.Replicas {
		n, err := newMonitoredNode(url, cfg.CheckTimeout, true)
		if err != nil {
			return nil, fmt.Errorf("router: replica set: replica %d: %w", i, err)
		}
		rs.replicas = append(rs.replicas, &replica{monitoredNode: n, index: i, role: RoleReplica, state: ReplicaUnknown})
	}
	rs.ctx, rs.cancel = context.WithCancel(context.Background())
	rs.view.Store(&replicaView{changed: make(chan struct{})})
	return rs, nil
}

// Start starts the monitor goroutine, which checks every node at once and then every
// CheckInterval. Calls after the first, or after Close, do nothing.
func (rs *ReplicaSet) Start() {
	rs.lifeMu.Lock()
	defer rs.lifeMu.Unlock()
	if rs.started || rs.stopped {
		return
	}
	rs.started = true
	go rs.monitor()
}

// Close stops the monitor, waits for it and closes the monitoring connections. Pick finds no
// replica afterwards and WaitFor calls return. It is idempotent.
func (rs *ReplicaSet) Close() {
	rs.lifeMu.Lock()
	if rs.stopped {
		rs.lifeMu.Unlock()
		return
	}
	rs.stopped = true
	started := rs.started
	rs.lifeMu.Unlock()

	rs.cancel()
	if started {
		<-rs.done
	}
	rs.checkMu.Lock()
	rs.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), rs.cfg.CheckTimeout)
	defer cancel()
	rs.primary.closeConn(ctx)
	for _, r := range rs.replicas {
		r.closeConn(ctx)
	}
	rs.checkMu.Unlock()
	rs.closeLSN(ctx)

	rs.mu.Lock()
	old := rs.view.Load()
	rs.view.Store(&replicaView{changed: make(chan struct{}), closed: true})
	close(old.changed)
	rs.mu.Unlock()
}

// CheckNow checks every node once, synchronously, and publishes the result. Replicas still
// banned are not checked. It waits for a round of the monitor in progress. After Close it does
// nothing.
func (rs *ReplicaSet) CheckNow(ctx context.Context) {
	rs.round(ctx, true)
}

// Pick chooses a usable replica whose replay position is at least minLSN (0: any) by the
// balancing policy. ok is false when there is none. After a successful Pick the caller must
// call Done(index) when the routed work ends. Pick does not allocate.
func (rs *ReplicaSet) Pick(minLSN LSN) (index int, ok bool) {
	return rs.pick(rs.view.Load(), minLSN)
}

func (rs *ReplicaSet) pick(v *replicaView, minLSN LSN) (int, bool) {
	usable := v.usable
	eligible := len(usable)
	if minLSN > 0 {
		eligible = 0
		for i := range usable {
			if usable[i].replay >= minLSN {
				eligible++
			}
		}
	}
	if eligible == 0 {
		return -1, false
	}
	// k: whose turn it is among the eligible replicas.
	var k int
	if rs.cfg.Balance == BalanceRandom {
		k = rand.IntN(eligible)
	} else {
		k = int((rs.next.Add(1) - 1) % uint64(eligible))
	}
	var best *replica
	if rs.cfg.Balance == BalanceLeastOutstanding {
		// The fewest outstanding wins; ties go to the first in turn from the k-th.
		var bestLoad int64
		var bestRank, e int
		for i := range usable {
			u := &usable[i]
			if u.replay < minLSN {
				continue
			}
			rank := e - k
			if rank < 0 {
				rank += eligible
			}
			e++
			load := u.r.outstanding.Load()
			if best == nil || load < bestLoad || load == bestLoad && rank < bestRank {
				best, bestLoad, bestRank = u.r, load, rank
			}
		}
	} else {
		for i := range usable {
			u := &usable[i]
			if u.replay < minLSN {
				continue
			}
			if k == 0 {
				best = u.r
				break
			}
			k--
		}
	}
	best.routed.Add(1)
	best.outstanding.Add(1)
	return best.index, true
}

// Done ends the work routed by a successful Pick or WaitFor of replica index.
func (rs *ReplicaSet) Done(index int) {
	rs.replicaAt(index, "Done").outstanding.Add(-1)
}

// WaitFor blocks until a usable replica has replayed minLSN, and picks it as Pick does; ok is
// false when ctx ends first or the set is closed. After a successful WaitFor the caller must call
// Done(index). While it waits, the monitor re-reads the replicas' replay positions every few
// milliseconds.
func (rs *ReplicaSet) WaitFor(ctx context.Context, minLSN LSN) (index int, ok bool) {
	v := rs.view.Load()
	if i, ok := rs.pick(v, minLSN); ok {
		return i, true
	}
	rs.waiters.Add(1)
	defer rs.waiters.Add(-1)
	select {
	case rs.wake <- struct{}{}:
	default:
	}
	for !v.closed {
		select {
		case <-ctx.Done():
			return -1, false
		case <-v.changed:
		}
		v = rs.view.Load()
		if i, ok := rs.pick(v, minLSN); ok {
			return i, true
		}
	}
	return -1, false
}

// PrimaryLSN returns the latest pg_current_wal_lsn() read from the primary; 0 before the first
// successful check.
func (rs *ReplicaSet) PrimaryLSN() LSN {
	return LSN(rs.primaryLSN.Load())
}

// Ban leaves replica index out now, as a failed check does: for BanTime, doubled for each
// consecutive failure up to 8x. The pool calls it when a connection to the replica fails. A ban
// while banned only records err.
func (rs *ReplicaSet) Ban(index int, err error) {
	r := rs.replicaAt(index, "Ban")
	if err == nil {
		err = errors.New("banned")
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.failLocked(r, err, time.Now())
	rs.publishLocked()
}

// PrimaryStatus returns the monitor's view of the primary.
func (rs *ReplicaSet) PrimaryStatus() PrimaryStatus {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	st := PrimaryStatus{Host: rs.primary.host, State: PrimaryOK, LastError: rs.primaryErr, DownSince: rs.primaryDownSince}
	switch {
	case !rs.primaryChecked:
		st.State = PrimaryUnknown
	case rs.primaryFailing:
		st.State = PrimaryDown
	case rs.primaryInRecovery:
		st.State = PrimaryInRecovery
	}
	return st
}

// Snapshot returns the state of every replica, in the order of ReplicaSetConfig.Replicas.
func (rs *ReplicaSet) Snapshot() []ReplicaStatus {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]ReplicaStatus, len(rs.replicas))
	for i, r := range rs.replicas {
		out[i] = ReplicaStatus{
			Index:       r.index,
			Host:        r.host,
			Role:        r.role,
			State:       r.state,
			LagBytes:    r.lagBytes,
			LagTime:     r.lagTime,
			ReplayLSN:   r.replayLSN,
			ReceiveLSN:  r.receiveLSN,
			Routed:      r.routed.Load(),
			Outstanding: r.outstanding.Load(),
			LastError:   r.lastErr,
			BannedUntil: r.bannedUntil,
		}
	}
	return out
}

// replicaAt returns replica index, and panics on an index out of range (API misuse).
func (rs *ReplicaSet) replicaAt(index int, method string) *replica {
	if index < 0 || index >= len(rs.replicas) {
		panic(fmt.Sprintf("router: ReplicaSet.%s(%d) with %d replicas", method, index, len(rs.replicas)))
	}
	return rs.replicas[index]
}
