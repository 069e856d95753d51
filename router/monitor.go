package router

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// monitoredNode is a node with its monitoring connection.
type monitoredNode struct {
	host   string // "host:port"
	config *pgconn.Config
	conn   *pgconn.PgConn // nil until connected, and after a failure; guarded by ReplicaSet.checkMu
}

// replicaCheck is the outcome of one replica check.
type replicaCheck struct {
	err        error
	inRecovery bool
	replay     LSN
	receive    LSN
	replayAge  time.Duration // now() - pg_last_xact_replay_timestamp(); negative when unknown
}

// primaryCheck is the outcome of one primary check.
type primaryCheck struct {
	err        error
	lsn        LSN
	inRecovery bool
}

// newMonitoredNode parses a node's connection string for the monitor. For a replica, the
// monitor connects whatever the node's role, so that it sees a promotion: a
// target_session_attrs check is dropped.
func newMonitoredNode(connString string, timeout time.Duration, replica bool) (monitoredNode, error) {
	config, err := pgconn.ParseConfig(connString)
	if err != nil {
		return monitoredNode{}, err
	}
	config.ConnectTimeout = timeout
	config.RuntimeParams["application_name"] = monitorApplicationName
	if replica {
		config.ValidateConnect = nil
	}
	host := config.Host
	if config.Port != 0 {
		host = net.JoinHostPort(config.Host, strconv.Itoa(int(config.Port)))
	}
	return monitoredNode{host: host, config: config}, nil
}

// monitor is the monitor goroutine: a round at once, then every CheckInterval, and a round of
// the replicas alone every waitPollInterval while WaitFor calls wait.
func (rs *ReplicaSet) monitor() {
	defer close(rs.done)
	ticker := time.NewTicker(rs.cfg.CheckInterval)
	defer ticker.Stop()
	rs.round(rs.ctx, true)
	for {
		var poll <-chan time.Time
		if rs.waiters.Load() > 0 {
			poll = time.After(waitPollInterval)
		}
		select {
		case <-rs.ctx.Done():
			return
		case <-ticker.C:
			rs.round(rs.ctx, true)
		case <-rs.wake:
			rs.round(rs.ctx, false)
		case <-poll:
			rs.round(rs.ctx, false)
		}
	}
}

// round checks the primary (if withPrimary) and every replica not banned, concurrently, then
// applies the results and publishes the usable replicas.
func (rs *ReplicaSet) round(ctx context.Context, withPrimary bool) {
	promoted := rs.checkRound(ctx, withPrimary)
	if rs.cfg.OnPromotion != nil {
		for _, i := range promoted {
			rs.cfg.OnPromotion(i)
		}
	}
}

// checkRound runs a round and returns the replicas promoted since the last one.
func (rs *ReplicaSet) checkRound(ctx context.Context, withPrimary bool) (promoted []int) {
	rs.checkMu.Lock()
	defer rs.checkMu.Unlock()
	if rs.closed {
		return nil
	}
	start := time.Now()
	rs.mu.Lock()
	primaryFailing := rs.primaryFailing
	for _, r := range rs.replicas {
		// While the primary fails, a banned replica is checked too: it may be the one
		// promoted in the primary's place, and its ban must not hide that.
		r.due = !start.Before(r.bannedUntil) || withPrimary && primaryFailing
	}
	rs.mu.Unlock()

	var wg sync.WaitGroup
	var pc primaryCheck
	if withPrimary {
		wg.Go(func() { pc = rs.checkPrimary(ctx) })
	}
	for _, r := range rs.replicas {
		if r.due {
			wg.Go(func() { r.res = rs.checkReplica(ctx, r) })
		}
	}
	wg.Wait()
	if withPrimary && pc.err != nil && !primaryFailing {
		// The primary has just begun to fail: the banned replicas are checked at once
		// rather than at the next round.
		for _, r := range rs.replicas {
			if !r.due {
				r.due = true
				wg.Go(func() { r.res = rs.checkReplica(ctx, r) })
			}
		}
		wg.Wait()
	}

	now := time.Now()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if withPrimary {
		rs.applyPrimaryLocked(pc, start)
	}
	for _, r := range rs.replicas {
		if r.due && rs.applyLocked(r, now) {
			promoted = append(promoted, r.index)
		}
	}
	rs.publishLocked()
	return promoted
}

// checkPrimary reads the primary's WAL position and role.
func (rs *ReplicaSet) checkPrimary(ctx context.Context) primaryCheck {
	row, err := rs.query(ctx, &rs.primary, primaryCheckSQL, 2)
	if err != nil {
		return primaryCheck{err: err}
	}
	lsn, err := ParseLSN(row[0])
	if err != nil {
		return primaryCheck{err: err}
	}
	return primaryCheck{lsn: lsn, inRecovery: row[1] == "t"}
}

// checkReplica reads a replica's role, replay and receive positions and replay age.
func (rs *ReplicaSet) checkReplica(ctx context.Context, r *replica) replicaCheck {
	row, err := rs.query(ctx, &r.monitoredNode, replicaCheckSQL, 4)
	if err != nil {
		return replicaCheck{err: err}
	}
	c := replicaCheck{inRecovery: row[0] == "t", replayAge: -1}
	if row[1] != "" {
		if c.replay, err = ParseLSN(row[1]); err != nil {
			return replicaCheck{err: err}
		}
	}
	if row[2] != "" {
		if c.receive, err = ParseLSN(row[2]); err != nil {
			return replicaCheck{err: err}
		}
	}
	age, err := strconv.ParseFloat(row[3], 64)
	if err != nil {
		return replicaCheck{err: fmt.Errorf("replay age %q: %w", row[3], err)}
	}
	if age >= 0 {
		c.replayAge = time.Duration(age * float64(time.Second))
	}
	return c
}

// query runs sql on n's monitoring connection, connecting first if needed, within
// CheckTimeout, and returns its single row of cols text columns. On any error the connection
// is closed, to be opened again by the next check.
func (rs *ReplicaSet) query(ctx context.Context, n *monitoredNode, sql string, cols int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, rs.cfg.CheckTimeout)
	defer cancel()
	if n.conn == nil || n.conn.IsClosed() {
		conn, err := pgconn.ConnectConfig(ctx, n.config)
		if err != nil {
			n.conn = nil
			return nil, err
		}
		n.conn = conn
	}
	results, err := n.conn.Exec(ctx, sql).ReadAll()
	if err == nil && (len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != cols) {
		err = fmt.Errorf("check query returned an unexpected result (%d results)", len(results))
	}
	if err != nil {
		n.closeConn(ctx)
		return nil, err
	}
	row := make([]string, cols)
	for i, v := range results[0].Rows[0] {
		row[i] = string(v)
	}
	return row, nil
}

// closeConn closes the monitoring connection, if any.
func (n *monitoredNode) closeConn(ctx context.Context) {
	if n.conn != nil {
		_ = n.conn.Close(ctx)
		n.conn = nil
	}
}

// applyPrimaryLocked records a primary check that began at start.
func (rs *ReplicaSet) applyPrimaryLocked(c primaryCheck, start time.Time) {
	rs.primaryChecked = true
	if c.err != nil {
		if !rs.primaryFailing {
			rs.log.Warn("primary check failed", "host", rs.primary.host, "error", c.err)
			rs.primaryDownSince = start
		} else {
			rs.log.Debug("primary check failed", "host", rs.primary.host, "error", c.err)
		}
		rs.primaryFailing = true
		rs.primaryErr = c.err.Error()
		return
	}
	if rs.primaryFailing {
		rs.log.Info("primary check succeeded again", "host", rs.primary.host)
	}
	rs.primaryFailing = false
	rs.primaryErr, rs.primaryDownSince = "", time.Time{}
	if c.inRecovery && !rs.primaryInRecovery {
		rs.log.Warn("primary is in recovery", "host", rs.primary.host)
	}
	rs.primaryInRecovery = c.inRecovery
	rs.primaryLSN.Store(uint64(c.lsn))
	rs.primaryLSNAt = start
}

// applyLocked records r's check, ended at now, and reports whether it found r newly promoted.
func (rs *ReplicaSet) applyLocked(r *replica, now time.Time) (promoted bool) {
	c := r.res
	if c.err != nil {
		rs.failLocked(r, c.err, now)
		return false
	}
	if now.Before(r.bannedUntil) {
		if c.inRecovery || r.role == RolePrimary {
			// Banned before or during the check: the ban stands. (A banned replica is
			// checked only while the primary fails, to see a promotion.)
			return false
		}
		// Promoted while banned: the ban was about serving reads, which a primary never
		// does; what matters now is that it takes the writes.
		rs.log.Info("a banned replica answers again, promoted", "replica", r.index, "host", r.host)
		r.bannedUntil = now
	}
	was := r.state
	r.failures = 0
	r.lastErr = ""
	r.replayLSN, r.receiveLSN = c.replay, c.receive

	if !c.inRecovery {
		promoted = r.role != RolePrimary
		if promoted {
			rs.log.Warn("replica promoted: no longer routing reads to it", "replica", r.index, "host", r.host)
		}
		r.role, r.state = RolePrimary, ReplicaOK
		r.lagBytes, r.lagTime, r.caughtUpAt = 0, 0, time.Time{}
		return promoted
	}
	if r.role == RolePrimary {
		rs.log.Info("replica is in recovery again", "replica", r.index, "host", r.host)
	}
	r.role = RoleReplica

	primaryLSN := LSN(rs.primaryLSN.Load())
	if primaryLSN == 0 || c.replay >= primaryLSN {
		r.lagBytes, r.lagTime = 0, 0
		if primaryLSN != 0 {
			r.caughtUpAt = rs.primaryLSNAt
		}
	} else {
		r.lagBytes = int64(primaryLSN - c.replay)
		// The age of the last replayed commit overstates the lag when the WAL the replica
		// lacks holds no commit (a checkpoint, pruning): a replica seen caught up at T is at
		// most now - T behind.
		r.lagTime = max(c.replayAge, 0)
		if !r.caughtUpAt.IsZero() {
			r.lagTime = min(r.lagTime, now.Sub(r.caughtUpAt))
		}
	}
	lagging := rs.cfg.MaxLagBytes > 0 && r.lagBytes > rs.cfg.MaxLagBytes ||
		rs.cfg.MaxLagTime > 0 && r.lagTime > rs.cfg.MaxLagTime
	if lagging {
		r.state = ReplicaLagging
	} else {
		r.state = ReplicaOK
	}
	switch {
	case r.state == was:
	case r.state == ReplicaLagging:
		rs.log.Warn("replica lagging: skipping it", "replica", r.index, "host", r.host,
			"lag_bytes", r.lagBytes, "lag_time", r.lagTime)
	case was == ReplicaBanned:
		rs.log.Info("replica back in service", "replica", r.index, "host", r.host)
	case was == ReplicaLagging:
		rs.log.Info("replica caught up", "replica", r.index, "host", r.host)
	default:
		rs.log.Debug("replica ok", "replica", r.index, "host", r.host, "lag_bytes", r.lagBytes)
	}
	return false
}

// failLocked bans r after a failure at now, unless it is banned already.
func (rs *ReplicaSet) failLocked(r *replica, err error, now time.Time) {
	r.lastErr = err.Error()
	r.caughtUpAt = time.Time{}
	if now.Before(r.bannedUntil) {
		return
	}
	r.failures++
	ban := rs.cfg.BanTime << min(r.failures-1, maxBanShift)
	r.bannedUntil = now.Add(ban)
	r.state = ReplicaBanned
	if r.failures == 1 {
		rs.log.Warn("replica banned", "replica", r.index, "host", r.host, "for", ban, "error", err)
	} else {
		rs.log.Debug("replica banned again", "replica", r.index, "host", r.host, "for", ban, "failures", r.failures, "error", err)
	}
}

// publishLocked publishes the usable replicas, if they or their replay positions changed, and
// wakes the WaitFor calls waiting on the previous view.
func (rs *ReplicaSet) publishLocked() {
	old := rs.view.Load()
	if old.closed {
		return
	}
	usable := make([]usableReplica, 0, len(rs.replicas))
	for _, r := range rs.replicas {
		if r.role == RoleReplica && r.state == ReplicaOK {
			usable = append(usable, usableReplica{r: r, replay: r.replayLSN})
		}
	}
	if slices.Equal(usable, old.usable) {
		return
	}
	rs.view.Store(&replicaView{usable: usable, changed: make(chan struct{})})
	close(old.changed)
}
