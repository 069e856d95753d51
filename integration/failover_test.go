package integration_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// Failover that clients do not notice: a replica's death under autocommit reads, a
// replica promoted after a history of failures, and the primary's loss. Each test kills
// real PostgreSQL processes with the harness's node controls and logs its measurement in
// the fault matrix's style.

// readClients runs n autocommit read clients through p with pgx, half on the extended
// protocol (pgx's default) and half on the simple protocol, until stop is closed. Each read
// scans a few thousand rows server-side and returns one row at the end, so that reads are
// in flight on the servers at any moment.
type readClients struct {
	t          *testing.T
	stop       chan struct{}
	wg         sync.WaitGroup
	onReplica  atomic.Int64
	onPrimary  atomic.Int64
	mu         sync.Mutex
	errs       map[string]int // client-visible errors by SQLSTATE ("none" without one)
	samples    map[string]string
	lastReadAt atomic.Int64 // unix ns of the last successful read
}

const readSQL = "select pg_is_in_recovery(), (select count(*) from generate_series(1, 20000))"

func startReadClients(t *testing.T, url string, n int) *readClients {
	rc := &readClients{t: t, stop: make(chan struct{}), errs: map[string]int{}, samples: map[string]string{}}
	for i := range n {
		mode := pgx.QueryExecModeCacheStatement
		if i%2 == 1 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		conn := connect(t, url, mode)
		rc.wg.Go(func() { rc.run(url, mode, conn) })
	}
	t.Cleanup(rc.halt)
	return rc
}

func (rc *readClients) run(url string, mode pgx.QueryExecMode, conn *pgx.Conn) {
	for {
		select {
		case <-rc.stop:
			_ = conn.Close(context.Background())
			return
		default:
		}
		if conn.IsClosed() {
			cfg, err := pgx.ParseConfig(url)
			if err == nil {
				cfg.DefaultQueryExecMode = mode
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var nc *pgx.Conn
				if nc, err = pgx.ConnectConfig(ctx, cfg); err == nil {
					conn = nc
				}
				cancel()
			}
			if err != nil {
				rc.note(err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var inRecovery bool
		var count int64
		err := conn.QueryRow(ctx, readSQL).Scan(&inRecovery, &count)
		cancel()
		if err == nil && count != 20000 {
			err = fmt.Errorf("read returned %d rows counted, want 20000", count)
		}
		if err != nil {
			rc.note(err)
			continue
		}
		rc.lastReadAt.Store(time.Now().UnixNano())
		if inRecovery {
			rc.onReplica.Add(1)
		} else {
			rc.onPrimary.Add(1)
		}
	}
}

// note counts a client-visible error.
func (rc *readClients) note(err error) {
	code := "none"
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code = pgErr.Code
	}
	rc.mu.Lock()
	rc.errs[code]++
	if _, ok := rc.samples[code]; !ok {
		rc.samples[code] = err.Error()
	}
	rc.mu.Unlock()
}

func (rc *readClients) halt() {
	select {
	case <-rc.stop:
	default:
		close(rc.stop)
	}
	rc.wg.Wait()
}

// errorCount is the number of client-visible errors so far, and a summary.
func (rc *readClients) errorCount() (int, string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	total := 0
	var parts []string
	for code, n := range rc.errs {
		total += n
		parts = append(parts, fmt.Sprintf("%s x%d (%s)", code, n, rc.samples[code]))
	}
	slices.Sort(parts)
	if total == 0 {
		return 0, "none"
	}
	return total, strings.Join(parts, ", ")
}

func (rc *readClients) reads() int64 { return rc.onReplica.Load() + rc.onPrimary.Load() }

// TestReplicaLossUnderReads: 8 autocommit read clients (pgx, pool size 10) run on the
// replica when it dies, by kill -9 and then by a fast shutdown (whose backends send
// FATAL 57P01 before closing). Each read in flight on it had sent the client nothing, so
// it runs again on the primary: no client sees an error. The replica is banned at once.
func TestReplicaLossUnderReads(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	cfg := pool.Config{Replicas: c.ReplicaURLs(), DefaultPoolSize: 10, ReplicaCheckInterval: 200 * time.Millisecond,
		ReplicaBanTime: time.Second}
	p := integration.StartProxy(t, c, cfg)
	require.Eventually(t, func() bool { return replicaOK(p) }, 20*time.Second, 50*time.Millisecond)
	replica := c.Replicas[0]

	for _, fault := range []struct {
		name string
		do   func() error
	}{
		{"kill -9 replica", func() error { return c.KillNode(replica) }},
		{"fast shutdown of the replica", func() error { return c.StopNode(replica) }},
	} {
		t.Run(strings.ReplaceAll(fault.name, " ", "_"), func(t *testing.T) {
			if strings.HasPrefix(fault.name, "fast shutdown") {
				integration.LocalBackendOnly(t, c, "stopping a container is docker stop (SIGTERM, PostgreSQL's smart shutdown, then SIGKILL), not pg_ctl's fast shutdown")
			}
			require.Eventually(t, func() bool { return replicaOK(p) }, 30*time.Second, 50*time.Millisecond, "%+v", p.Server.Stat().Replicas)
			replays0 := p.Server.Stat().ReadReplays
			rc := startReadClients(t, p.URL("", ""), 8)
			require.Eventually(t, func() bool { return rc.onReplica.Load() >= 200 }, 30*time.Second, 10*time.Millisecond,
				"reads do not run on the replica")

			killed := time.Now()
			require.NoError(t, fault.do())
			before := rc.reads()
			time.Sleep(3 * time.Second)
			after := rc.reads()
			rc.halt()

			n, summary := rc.errorCount()
			st := p.Server.Stat()
			t.Logf("fault %-55s errors: %-40s reads %6d (%d during the 3 s after it)  replayed %d  replica %s until %s after",
				fault.name+" under 8 read clients:", summary, rc.reads(), after-before, st.ReadReplays-replays0,
				st.Replicas[0].State, st.Replicas[0].BannedUntil.Sub(killed).Round(time.Millisecond))
			require.Zero(t, n, "client-visible errors: %s", summary)
			require.Greater(t, after-before, int64(50), "reads went on on the primary")
			require.Equal(t, "banned", st.Replicas[0].State)

			require.NoError(t, c.StartNode(ctxT(t, time.Minute), replica))
		})
	}
}

// TestReplicaLossAfterRows: a read on the replica has produced its first rows when its
// server is terminated (pg_terminate_backend, the same 57P01 as a fast shutdown). The rows
// wait in the server's output buffer and reach cmpool together with the FATAL after them,
// before any CommandComplete. None of them has reached the client, so the read runs again
// on the primary, and the client gets its whole result once, with no error. Both
// protocols.
func TestReplicaLossAfterRows(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	p := integration.StartProxy(t, c, pool.Config{Replicas: c.ReplicaURLs(), DefaultPoolSize: 2,
		ReplicaCheckInterval: 200 * time.Millisecond, ReplicaBanTime: time.Second})
	onReplica := connect(t, c.Replicas[0].URL("", ""), pgx.QueryExecModeSimpleProtocol)
	const read = "select g, pg_is_in_recovery() from generate_series(1, 3) g" +
		" union all select 4, pg_is_in_recovery() from pg_sleep(2) /* rows then sleep */"

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := ctxT(t, time.Minute)
			require.Eventually(t, func() bool { return replicaOK(p) }, 30*time.Second, 50*time.Millisecond, "%+v", p.Server.Stat().Replicas)
			conn := connect(t, p.URL("", ""), mode)
			replays0 := p.Server.Stat().ReadReplays

			type row struct {
				g          int
				inRecovery bool
			}
			done := make(chan error, 1)
			var got []row
			go func() {
				rows, err := conn.Query(ctx, read)
				if err != nil {
					done <- err
					return
				}
				for rows.Next() {
					var r row
					if err := rows.Scan(&r.g, &r.inRecovery); err != nil {
						rows.Close()
						done <- err
						return
					}
					got = append(got, r)
				}
				rows.Close()
				done <- rows.Err()
			}()

			// The read's server on the replica, once it sleeps after its first three rows.
			var pid int
			require.Eventually(t, func() bool {
				err := onReplica.QueryRow(ctx, "select pid from pg_stat_activity where pid <> pg_backend_pid()"+
					" and state = 'active' and query like '%rows then sleep%'").Scan(&pid)
				return err == nil
			}, 10*time.Second, 10*time.Millisecond, "the read does not run on the replica")
			time.Sleep(200 * time.Millisecond)
			var ok bool
			require.NoError(t, onReplica.QueryRow(ctx, "select pg_terminate_backend($1)", pid).Scan(&ok))
			require.True(t, ok)

			select {
			case err := <-done:
				require.NoError(t, err, "the client saw the replica's failure")
			case <-ctx.Done():
				t.Fatal("the read did not end")
			}
			require.Equal(t, []row{{1, false}, {2, false}, {3, false}, {4, false}}, got,
				"the whole result, once, from the primary")
			require.Equal(t, replays0+1, p.Server.Stat().ReadReplays)
		})
	}
}

// TestPromotionAfterFlappingReplica: the replica was killed and restarted, so its ban has
// doubled and still runs, when the primary stops and the replica is promoted. The monitor
// checks banned replicas while the primary fails, so writes through the same cmpool, with
// the default check interval and ban time, resume within about a check interval of
// pg_ctl promote returning.
func TestPromotionAfterFlappingReplica(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	admin := direct(t, c)
	ctx := ctxT(t, 3*time.Minute)
	_, err := admin.Exec(ctx, "create table failover_writes(id bigint primary key, at timestamptz default now())")
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))
	require.NoError(t, c.WaitReplication(ctx))

	p := integration.StartProxy(t, c, pool.Config{Replicas: c.ReplicaURLs(), DefaultPoolSize: 10})
	require.Eventually(t, func() bool { return replicaOK(p) }, 20*time.Second, 50*time.Millisecond)
	rc := startReadClients(t, p.URL("", ""), 2)

	// The writer: one insert at a time, each bounded, reconnecting when cmpool closes it.
	var (
		mu     sync.Mutex
		acked  []time.Time
		nextID atomic.Int64
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		var conn *pgx.Conn
		for {
			select {
			case <-stop:
				if conn != nil {
					_ = conn.Close(context.Background())
				}
				return
			default:
			}
			octx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if conn == nil || conn.IsClosed() {
				var cerr error
				conn, cerr = pgx.Connect(octx, p.URL("", ""))
				if cerr != nil {
					conn = nil
					cancel()
					time.Sleep(20 * time.Millisecond)
					continue
				}
			}
			_, werr := conn.Exec(octx, "insert into failover_writes(id) values ($1)", nextID.Add(1))
			cancel()
			if werr == nil {
				mu.Lock()
				acked = append(acked, time.Now())
				mu.Unlock()
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	firstAckAfter := func(at time.Time) time.Time {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range acked {
			if a.After(at) {
				return a
			}
		}
		return time.Time{}
	}
	require.Eventually(t, func() bool { return !firstAckAfter(time.Time{}).IsZero() }, 20*time.Second, 20*time.Millisecond)

	// The replica flaps: killed long enough for its ban to double twice (5 s, 10 s, then
	// 20 s with the defaults), then started again.
	replica := c.Replicas[0]
	require.NoError(t, c.KillNode(replica))
	require.Eventually(t, func() bool {
		r := p.Server.Stat().Replicas[0]
		return r.State == "banned" && time.Until(r.BannedUntil) > 15*time.Second
	}, 40*time.Second, 50*time.Millisecond, "the ban does not grow: %+v", p.Server.Stat().Replicas)
	require.NoError(t, c.StartNode(ctx, replica))
	require.NoError(t, c.WaitReplication(ctx))
	banned := p.Server.Stat().Replicas[0]
	require.Equal(t, "banned", banned.State, "the scenario needs the replica still banned")
	t.Logf("replica banned for %s more after its restart", time.Until(banned.BannedUntil).Round(time.Millisecond))

	// The primary stops; the replica is promoted while still banned.
	require.NoError(t, c.StopNode(c.Primary))
	require.NoError(t, c.Promote(ctx, replica))
	promoted := time.Now()
	require.Greater(t, banned.BannedUntil.Sub(promoted), 5*time.Second,
		"the scenario needs the ban to outlast the promotion by more than the bound below")
	require.Eventually(t, func() bool { return !firstAckAfter(promoted).IsZero() }, 60*time.Second, 10*time.Millisecond,
		"no write acknowledged after the promotion")
	elapsed := firstAckAfter(promoted).Sub(promoted)
	st := p.Server.Stat()
	t.Logf("fault %-55s pg_ctl promote to first write %s  (its ban had %s left at the promotion; promotions followed %d)",
		"promote a banned, flapping replica after the primary stops:", elapsed.Round(time.Millisecond),
		banned.BannedUntil.Sub(promoted).Round(time.Millisecond), st.Promotions)
	close(stop)
	wg.Wait()
	rc.halt()

	// Target: within about one check interval (1 s by default), 2 s at most; the bound
	// here leaves room for a loaded machine, and is still well under the ban's end.
	require.Less(t, elapsed, 4*time.Second)
	require.Equal(t, int64(1), st.Promotions)

	// The write went to the promoted node.
	conn := connect(t, replica.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var n int
	require.NoError(t, conn.QueryRow(ctx, "select count(*) from failover_writes").Scan(&n))
	require.Positive(t, n)
}

// TestPrimaryLoss: with the primary killed, writes fail fast with 08006 (refused at once,
// never held past server_connect_timeout), reads keep being served by the replica, and
// Ready (/readyz) and the console's SHOW STATE say that the primary is down and where
// reads go. Once it is back, writes resume and the console says so.
func TestPrimaryLoss(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	integration.LocalBackendOnly(t, c, "the container engine's kill lets the server end its sessions with 57P01 first; this test is about connections that just drop (kill -9 of the postmaster)")
	cfg := pool.Config{Replicas: c.ReplicaURLs(), DefaultPoolSize: 10, ServerConnectTimeout: 2 * time.Second,
		AdminUsers: []string{"postgres"}}
	p := integration.StartProxy(t, c, cfg)
	ctx := ctxT(t, 3*time.Minute)
	require.Eventually(t, func() bool { return replicaOK(p) }, 20*time.Second, 50*time.Millisecond)
	console := adminConn(t, p, "cmpool", "postgres")
	state := func() map[string]string {
		_, _, rows := show(t, console, "SHOW STATE")
		m := map[string]string{}
		for _, r := range rows {
			m[r[0]] = r[1]
		}
		return m
	}
	require.Equal(t, "ok", state()["primary_state"])

	writer := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := writer.Exec(ctx, "create table primary_loss(x int)")
	require.NoError(t, err)
	rc := startReadClients(t, p.URL("", ""), 4)
	require.Eventually(t, func() bool { return rc.onReplica.Load() >= 50 }, 30*time.Second, 10*time.Millisecond)

	require.NoError(t, c.KillNode(c.Primary))

	// Writes: 08006, each well within server_connect_timeout.
	var slowest time.Duration
	for range 10 {
		if writer.IsClosed() {
			writer = connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		}
		begin := time.Now()
		_, err := writer.Exec(ctx, "insert into primary_loss values (1)")
		took := time.Since(begin)
		slowest = max(slowest, took)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		// 57P01 when a backend saw the postmaster die before it was killed itself, and
		// said so on its idle connection.
		require.Contains(t, []string{"08006", "57P01"}, pgErr.Code, "%v", err)
		require.Less(t, took, cfg.ServerConnectTimeout+3*time.Second)
	}

	// Reads go on, on the replica.
	readsAtKill := rc.onReplica.Load()
	require.Eventually(t, func() bool { return rc.onReplica.Load() >= readsAtKill+50 }, 20*time.Second, 10*time.Millisecond)

	// Ready and the console say what is happening.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	readyErr := p.Server.Ready(rctx)
	cancel()
	require.Error(t, readyErr)
	require.Contains(t, readyErr.Error(), "primary unreachable")
	require.Contains(t, readyErr.Error(), "reads go to 1 usable replica(s) of 1")
	var st map[string]string
	require.Eventually(t, func() bool { st = state(); return st["primary_state"] == "down" }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, c.Primary.Addr(), st["primary"])
	require.Equal(t, "1", st["usable_replicas"])
	require.NotEmpty(t, st["primary_error"])
	require.NotEmpty(t, st["primary_down_for"])
	rc.halt()
	n, summary := rc.errorCount()
	t.Logf("fault %-55s errors: %-40s reads %6d  writes: 08006 in at most %s  console: %v  ready: %v",
		"kill -9 primary under 4 read clients and a writer:", summary, rc.reads(), slowest.Round(time.Millisecond),
		st, readyErr)
	require.Zero(t, n, "reads failed: %s", summary)

	// Back: writes resume on the same client, and the console says so.
	require.NoError(t, c.StartNode(ctx, c.Primary))
	require.Eventually(t, func() bool {
		if writer.IsClosed() {
			return false
		}
		_, err := writer.Exec(ctx, "insert into primary_loss values (2)")
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { return state()["primary_state"] == "ok" }, 10*time.Second, 50*time.Millisecond)
}
