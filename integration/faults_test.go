package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// The fault suite: each fault gets its own cluster (faults kill nodes) and its own cmpool,
// runs the ledger workload (ledger_test.go) across the fault, and checks the invariants:
//   - every acknowledged write is on the primary afterwards;
//   - no client waits past its configured timeouts (with slack for a loaded machine);
//   - every error carries a SQLSTATE, from the fault's expected set;
//   - reads keep being served, and by a replica again once one is back;
//   - no server connection is reused in a bad state (each read checks it runs in a fresh
//     transaction and gets its own answer; no server is left idle in transaction);
//   - pool counts return to normal; goroutines and file descriptors return to baseline.
// Each fault logs a one-line summary; with CMPOOL_FAULT_REPORT set, it is also appended to
// that file.

// faultConfig is the cmpool configuration of the fault suite: short timeouts, so that
// faults are noticed within seconds.
func faultConfig(c *integration.Cluster) pool.Config {
	return pool.Config{
		Primary:              c.Primary.URL("", ""),
		Replicas:             c.ReplicaURLs(),
		DefaultPoolSize:      8,
		ReplicaCheckInterval: 200 * time.Millisecond,
		ReplicaBanTime:       time.Second,
		ServerConnectTimeout: 2 * time.Second,
		QueryWaitTimeout:     5 * time.Second,
		QueryTimeout:         3 * time.Second,
		RWWait:               200 * time.Millisecond,
	}
}

// clientBound is the longest a client may wait for one operation under faultConfig: a wait
// for a server, a connection attempt and a request, plus slack for a loaded machine.
func clientBound(cfg pool.Config) time.Duration {
	return cfg.QueryWaitTimeout + cfg.ServerConnectTimeout + cfg.QueryTimeout + cfg.RWWait + 10*time.Second
}

// faultEnv is one fault's cluster, proxy and workload.
type faultEnv struct {
	t     *testing.T
	c     *integration.Cluster
	cfg   pool.Config
	p     *integration.Proxy
	l     *ledger
	start time.Time // the fault's injection
	// primary is the node that is the primary after the fault.
	primary *integration.Node
	// repaired is when the fault was repaired (or injected, for faults that need no repair).
	repaired time.Time
	// promoted is when pg_ctl promote was run, for the failover fault.
	promoted time.Time
}

// faultCase is one row of the fault matrix.
type faultCase struct {
	name string
	// allowed lists the SQLSTATEs the workload may see.
	allowed []string
	// noReplicaAfter: no replica serves reads after this fault (the replica was promoted).
	noReplicaAfter bool
	// syncRep: acknowledged commits must be on the replica too (failover).
	syncRep bool
	inject  func(f *faultEnv)
}

// The SQLSTATEs a fault may cause: connection failure, admin shutdown or crash, the
// server's "cannot connect now" while it starts or recovers, query_timeout and
// query_wait_timeout, a protocol error from a connection cut mid-message, and a read-only
// refusal from a replica promoted or demoted under a request.
var (
	codesNodeDown = []string{"08006", "57P01", "57P02", "57P03", "57014", "08P01", "25006"}
	codesTimeout  = []string{"57014", "08006"} // 08006: a stopped idle server failed a login
)

func TestFaults(t *testing.T) {
	cases := []faultCase{
		{name: "kill -9 replica", allowed: codesNodeDown, inject: func(f *faultEnv) {
			require.NoError(f.t, f.c.KillNode(f.c.Replicas[0]))
			f.hold(4 * time.Second)
			f.repair(func() { require.NoError(f.t, f.c.StartNode(f.ctx(), f.c.Replicas[0])) })
		}},
		{name: "kill -9 primary", allowed: codesNodeDown, inject: func(f *faultEnv) {
			require.NoError(f.t, f.c.KillNode(f.c.Primary))
			f.hold(4 * time.Second)
			f.repair(func() { require.NoError(f.t, f.c.StartNode(f.ctx(), f.c.Primary)) })
		}},
		{name: "SIGSTOP backends > query_timeout", allowed: codesTimeout, inject: func(f *faultEnv) {
			// Every backend of the primary serving cmpool stops: requests in flight on them
			// hang until query_timeout.
			integration.LocalBackendOnly(f.t, f.c, "SIGSTOP to the primary's backends by pid, while the postmaster runs on")
			pids := f.backendPIDs(f.c.Primary)
			require.NotEmpty(f.t, pids)
			for _, pid := range pids {
				require.NoError(f.t, syscall.Kill(pid, syscall.SIGSTOP))
			}
			f.t.Cleanup(func() { f.sigcont(pids) })
			f.hold(f.cfg.QueryTimeout + 3*time.Second)
			f.repair(func() { f.sigcont(pids) })
		}},
		{name: "promote replica after primary dies", allowed: codesNodeDown, noReplicaAfter: true, syncRep: true, inject: func(f *faultEnv) {
			require.NoError(f.t, f.c.KillNode(f.c.Primary))
			f.hold(time.Second)
			f.repair(func() {
				f.promoted = time.Now()
				require.NoError(f.t, f.c.Promote(f.ctx(), f.c.Replicas[0]))
			})
			f.primary = f.c.Replicas[0]
		}},
		{name: "replica restarted", allowed: codesNodeDown, inject: func(f *faultEnv) {
			f.repair(func() {
				require.NoError(f.t, f.c.StopNode(f.c.Replicas[0]))
				require.NoError(f.t, f.c.StartNode(f.ctx(), f.c.Replicas[0]))
			})
		}},
		{name: "clients killed mid-transaction, mid-COPY, mid-pipeline", inject: func(f *faultEnv) {
			f.repair(func() {
				f.killClientMidTransaction()
				f.killClientMidCopy()
				f.killClientMidPipeline()
			})
		}},
		{name: "replica network blackholed", allowed: codesNodeDown, inject: func(f *faultEnv) {
			undo := blackhole(f.t, f.c.Replicas[0].Port)
			f.hold(f.cfg.QueryTimeout + 4*time.Second)
			f.repair(undo)
		}},
	}
	for _, fc := range cases {
		t.Run(strings.ReplaceAll(fc.name, " ", "_"), func(t *testing.T) { runFault(t, fc) })
	}
}

// runFault runs one fault of the matrix.
func runFault(t *testing.T, fc faultCase) {
	opts := integration.Options{Replicas: 1, Settings: map[string]string{
		// An acknowledged commit is in the WAL the kernel holds: kill -9 cannot lose it.
		"synchronous_commit": "on",
	}}
	c := integration.StartCluster(t, opts)
	admin := direct(t, c)
	ctx := ctxT(t, 4*time.Minute)
	_, err := admin.Exec(ctx, ledgerDDL)
	require.NoError(t, err)
	if fc.syncRep {
		// On the primary only: the promoted replica must not wait for a standby.
		_, err = admin.Exec(ctx, "alter system set synchronous_standby_names = 'replica1'")
		require.NoError(t, err)
		_, err = admin.Exec(ctx, "select pg_reload_conf()")
		require.NoError(t, err)
	}
	require.NoError(t, admin.Close(ctx))
	require.NoError(t, c.WaitReplication(ctx))

	goroutines0, fds0 := processCounts(t)
	f := &faultEnv{t: t, c: c, cfg: faultConfig(c), primary: c.Primary}
	f.p, err = integration.ServeProxy(f.cfg)
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = f.p.Close(context.Background())
		}
	})
	require.Eventually(t, func() bool { return replicaOK(f.p) }, 20*time.Second, 50*time.Millisecond, "the replica never became usable")
	f.l = startLedger(t, f.p.URL("", ""), 4)
	require.Eventually(t, func() bool { return f.l.ackedCount() >= 20 && f.l.readsAfter(time.Time{}, true) > 0 },
		30*time.Second, 50*time.Millisecond, "the workload does not run: errors %s", f.l.errorSummary())

	f.start = time.Now()
	fc.inject(f)

	// Recovery: writes are acknowledged again, and reads are served (by a replica, when
	// one is left).
	require.Eventually(t, func() bool {
		return !f.l.firstWriteAfter(f.repaired).IsZero() && f.l.readsAfter(f.repaired, false) > 0
	}, 60*time.Second, 50*time.Millisecond, "writes and reads did not resume; errors %s", f.l.errorSummary())
	recovery := f.l.firstWriteAfter(f.repaired).Sub(f.repaired)
	if !fc.noReplicaAfter {
		require.Eventually(t, func() bool { return f.l.readsAfter(time.Now().Add(-time.Second), true) > 0 },
			60*time.Second, 100*time.Millisecond, "reads never went back to the replica; errors %s", f.l.errorSummary())
	}
	// Reads kept being served by the survivors while the fault lasted. Not while the
	// primary is dead and not yet replaced: every read of the workload follows a write of
	// the same user, and no replica can be shown to hold that write without the primary's
	// position (docs/routing.md), so those reads fail with the primary.
	if !fc.noReplicaAfter {
		require.Positive(t, f.l.readsAfter(f.start, false)-f.l.readsAfter(f.repaired, false), "no read was served during the fault")
	}
	time.Sleep(time.Second)
	f.l.halt()

	// Every acknowledged write is on the primary.
	present := f.l.checkPresent(t, f.primary)
	if !fc.noReplicaAfter {
		// The killed clients' writes were rolled back, and nothing is left dirty.
		conn := connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		var n int
		require.NoError(t, conn.QueryRow(ctx, "select count(*) from pg_stat_activity where backend_type = 'client backend' and state like 'idle in transaction%'").Scan(&n))
		require.Zero(t, n, "server connections left idle in transaction")
		require.NoError(t, conn.Close(ctx))
	}
	require.Empty(t, f.l.dirty, "reads found servers in a bad state")

	// Errors carry a SQLSTATE from the fault's set.
	f.l.mu.Lock()
	for code, n := range f.l.errs {
		require.Contains(t, fc.allowed, code, "%d errors with SQLSTATE %s, e.g. %s", n, code, f.l.samples[code])
	}
	maxOp, maxOpName := f.l.maxOp, f.l.maxOpSQL
	f.l.mu.Unlock()
	require.Less(t, maxOp, clientBound(f.cfg), "a client waited too long (%s)", maxOpName)

	// Pool counts return to normal: no client, no server lent out, none over the limit.
	require.Eventually(t, func() bool {
		st := f.p.Server.Stat()
		if st.Clients != 0 {
			return false
		}
		for _, ps := range st.Pools {
			if ps.ActiveServers != 0 || ps.Servers > ps.MaxServers {
				return false
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "pools did not return to idle: %+v", f.p.Server.Stat())
	if !fc.noReplicaAfter {
		require.Eventually(t, func() bool { return replicaOK(f.p) }, 30*time.Second, 50*time.Millisecond, "replica not back: %+v", f.p.Server.Stat().Replicas)
	}

	// Goroutines and descriptors return to baseline once cmpool is closed.
	closed = true
	require.NoError(t, f.p.Close(ctxT(t, 30*time.Second)))
	goroutines, fds := settledCounts(t, goroutines0+2, fds0)
	require.LessOrEqual(t, goroutines, goroutines0+2, "goroutines leaked:\n%s", goroutineDump())
	require.LessOrEqual(t, fds, fds0, "file descriptors leaked: %s", openFDs())

	line := fmt.Sprintf("fault %-55s errors: %-40s acked %5d present %5d  recovery %-8s longest wait %s",
		fc.name+":", f.l.errorSummary(), f.l.ackedCount(), present, recovery.Round(time.Millisecond), maxOp.Round(time.Millisecond))
	if !f.promoted.IsZero() {
		line += fmt.Sprintf("  failover: pg_ctl promote to first write %s, primary killed to first write %s",
			f.l.firstWriteAfter(f.promoted).Sub(f.promoted).Round(time.Millisecond),
			f.l.firstWriteAfter(f.promoted).Sub(f.start).Round(time.Millisecond))
	}
	t.Log(line)
	if path := os.Getenv("CMPOOL_FAULT_REPORT"); path != "" {
		out, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		require.NoError(t, err)
		_, err = fmt.Fprintln(out, line)
		require.NoError(t, err)
		require.NoError(t, out.Close())
	}
}

func (f *faultEnv) ctx() context.Context { return ctxT(f.t, 2*time.Minute) }

// hold keeps the fault in place for d while the workload runs.
func (f *faultEnv) hold(d time.Duration) { time.Sleep(d) }

// repair runs the repair and records when it was done.
func (f *faultEnv) repair(do func()) {
	do()
	f.repaired = time.Now()
}

// replicaOK reports whether cmpool sees every replica usable.
func replicaOK(p *integration.Proxy) bool {
	st := p.Server.Stat()
	for _, r := range st.Replicas {
		if r.State != "ok" || r.Role != "replica" {
			return false
		}
	}
	return len(st.Replicas) > 0
}

// backendPIDs returns the pids of n's client backends other than the one asking.
func (f *faultEnv) backendPIDs(n *integration.Node) []int {
	conn := connect(f.t, n.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	defer conn.Close(context.Background())
	rows, err := conn.Query(f.ctx(), "select pid from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()")
	require.NoError(f.t, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(f.t, err)
	return pids
}

func (f *faultEnv) sigcont(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
}

// blackhole drops every packet to port on the loopback interface (iptables), as a network
// partition would: connections neither fail nor answer. The returned func removes the rule;
// so does t.Cleanup.
func blackhole(t *testing.T, port int) (undo func()) {
	t.Helper()
	rule := []string{"INPUT", "-i", "lo", "-p", "tcp", "--dport", strconv.Itoa(port), "-m", "comment", "--comment", "cmpool-fault-test", "-j", "DROP"}
	out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput()
	require.NoError(t, err, "iptables (installed by .ci/run; needs root): %s", out)
	done := false
	undo = func() {
		if done {
			return
		}
		done = true
		out, err := exec.Command("iptables", append([]string{"-D"}, rule...)...).CombinedOutput()
		require.NoError(t, err, "iptables: %s", out)
	}
	t.Cleanup(undo)
	return undo
}

// killedClient is a client of cmpool that will vanish without a Terminate message.
func (f *faultEnv) killedClient() (*pgconn.PgConn, *pgproto3.Frontend) {
	conn, err := pgconn.Connect(f.ctx(), f.p.URL("", ""))
	require.NoError(f.t, err)
	return conn, pgproto3.NewFrontend(conn.Conn(), conn.Conn())
}

// until reads from fe until a message for which done is true.
func (f *faultEnv) until(conn *pgconn.PgConn, fe *pgproto3.Frontend, done func(pgproto3.BackendMessage) bool) {
	f.t.Helper()
	require.NoError(f.t, conn.Conn().SetReadDeadline(time.Now().Add(30*time.Second)))
	for {
		msg, err := fe.Receive()
		require.NoError(f.t, err)
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			f.t.Fatalf("unexpected error: %s %s", e.Code, e.Message)
		}
		if done(msg) {
			return
		}
	}
}

func isReady(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ReadyForQuery); return ok }

// killClientMidTransaction: a client inserts inside a transaction and disappears. Its row
// must never commit.
func (f *faultEnv) killClientMidTransaction() {
	conn, fe := f.killedClient()
	fe.Send(&pgproto3.Query{String: "begin; insert into ledger(worker, conn, seq) values (-1, -1, 1)"})
	require.NoError(f.t, fe.Flush())
	f.until(conn, fe, isReady)
	require.NoError(f.t, conn.Conn().Close())
}

// killClientMidCopy: a client starts COPY FROM STDIN, sends some rows and disappears.
func (f *faultEnv) killClientMidCopy() {
	conn, fe := f.killedClient()
	fe.Send(&pgproto3.Query{String: "copy ledger(worker, conn, seq) from stdin"})
	require.NoError(f.t, fe.Flush())
	f.until(conn, fe, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CopyInResponse); return ok })
	for i := range 100 {
		fe.Send(&pgproto3.CopyData{Data: fmt.Appendf(nil, "-2\t-2\t%d\n", i)})
	}
	require.NoError(f.t, fe.Flush())
	require.NoError(f.t, conn.Conn().Close())
}

// killClientMidPipeline: a client sends a pipeline of inserts with no Sync, so that they are
// one uncommitted implicit transaction, plus a slow query, and disappears while it runs.
func (f *faultEnv) killClientMidPipeline() {
	conn, fe := f.killedClient()
	for i := range 10 {
		fe.Send(&pgproto3.Parse{Query: fmt.Sprintf("insert into ledger(worker, conn, seq) values (-3, -3, %d)", i)})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Execute{})
	}
	fe.Send(&pgproto3.Parse{Query: "select pg_sleep(0.5)"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Flush{})
	require.NoError(f.t, fe.Flush())
	f.until(conn, fe, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CommandComplete); return ok })
	require.NoError(f.t, conn.Conn().Close())
	// None of the killed clients' rows committed.
	admin := connect(f.t, f.c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	defer admin.Close(context.Background())
	require.Eventually(f.t, func() bool {
		var busy int
		err := admin.QueryRow(f.ctx(), "select count(*) from pg_stat_activity where backend_type = 'client backend' and (state like 'idle in transaction%' or query like '%pg_sleep(0.5)%') and pid <> pg_backend_pid()").Scan(&busy)
		return err == nil && busy == 0
	}, 20*time.Second, 50*time.Millisecond, "a killed client's server is still in its transaction")
	var n int
	require.NoError(f.t, admin.QueryRow(f.ctx(), "select count(*) from ledger where worker < 0").Scan(&n))
	require.Zero(f.t, n, "a killed client's uncommitted rows were committed")
}

// settledCounts polls processCounts for up to 20s until both are within bounds, and returns
// the last counts.
func settledCounts(t *testing.T, maxGoroutines, maxFDs int) (goroutines, fds int) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		goroutines, fds = processCounts(t)
		if goroutines <= maxGoroutines && fds <= maxFDs || time.Now().After(deadline) {
			return goroutines, fds
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func openFDs() string {
	entries, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range entries {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"->"+target)
	}
	return strings.Join(out, " ")
}

// TestQueryTimeout: a server that stops answering is dropped after query_timeout with
// FATAL 57014, and a transaction its client leaves idle is not timed.
func TestQueryTimeout(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, QueryTimeout: time.Second})
	integration.LocalBackendOnly(t, c, "SIGSTOP to one server backend by pid")
	ctx := ctxT(t, time.Minute)

	// Idle in a transaction for longer than query_timeout: fine.
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := conn.Exec(ctx, "begin")
	require.NoError(t, err)
	time.Sleep(2 * time.Second)
	var pid int
	require.NoError(t, conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))
	_, err = conn.Exec(ctx, "commit")
	require.NoError(t, err)

	// The pool's only server stops.
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	start := time.Now()
	_, err = conn.Exec(ctx, "select 1")
	elapsed := time.Since(start)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "57014", pgErr.Code, "got %v", err)
	require.Equal(t, "FATAL", pgErr.Severity)
	require.Contains(t, pgErr.Message, "query_timeout")
	require.GreaterOrEqual(t, elapsed, time.Second)
	require.Less(t, elapsed, 15*time.Second)
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))

	// The stopped server was dropped: the next client gets a new one.
	other := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var pid2 int
	require.NoError(t, other.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid2))
	require.NotEqual(t, pid, pid2)
}

// TestPromotionUnderAnOpenSession: a replica promoted while a client's transaction runs on
// it reports in_hot_standby = off to that session. That is a fact about the server, not a
// setting: the next client of the same server connection must not have it reset (which
// PostgreSQL refuses with 55P02), nor must the first client carry it to other servers.
func TestPromotionUnderAnOpenSession(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	// One server per pool, and a monitor that does not notice the promotion during the test:
	// reads keep going to the promoted node's replica pool.
	p := integration.StartProxy(t, c, pool.Config{Replicas: c.ReplicaURLs(), DefaultPoolSize: 1,
		ReplicaCheckInterval: time.Hour, Consistency: "eventual"})
	ctx := ctxT(t, time.Minute)
	require.Eventually(t, func() bool { return replicaOK(p) }, 20*time.Second, 50*time.Millisecond)

	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := a.Exec(ctx, "begin read only")
	require.NoError(t, err)
	var inRecovery bool
	require.NoError(t, a.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.True(t, inRecovery, "the read-only transaction runs on the replica")
	require.NoError(t, c.Promote(ctx, c.Replicas[0]))
	require.NoError(t, a.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.False(t, inRecovery)
	require.Equal(t, "off", a.PgConn().ParameterStatus("in_hot_standby"), "the session was told")
	_, err = a.Exec(ctx, "commit")
	require.NoError(t, err)

	// Another client gets that server connection for a read.
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var port int
	require.NoError(t, b.QueryRow(ctx, "select inet_server_port()").Scan(&port))
	require.Equal(t, c.Replicas[0].Port, port)
	// And the first client reads again, on that server and on the primary.
	require.NoError(t, a.QueryRow(ctx, "select inet_server_port()").Scan(&port))
	require.Equal(t, c.Replicas[0].Port, port)
	_, err = a.Exec(ctx, "create table after_promotion(x int)")
	require.NoError(t, err)
}

// TestLoginWhilePrimaryDown: with the primary down, a new client logs in on a replica and
// reads; its writes fail with ERROR 08006 and leave the connection usable.
func TestLoginWhilePrimaryDown(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	p := integration.StartProxy(t, c, pool.Config{Replicas: c.ReplicaURLs(), ReplicaCheckInterval: 100 * time.Millisecond,
		ServerConnectTimeout: 2 * time.Second})
	ctx := ctxT(t, time.Minute)
	require.Eventually(t, func() bool { return replicaOK(p) }, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, c.KillNode(c.Primary))

	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var inRecovery bool
	require.NoError(t, conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.True(t, inRecovery)
	_, err := conn.Exec(ctx, "create table while_down(x int)")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "08006", pgErr.Code)
	require.Equal(t, "ERROR", pgErr.Severity)
	require.NoError(t, conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.True(t, inRecovery)

	// Once the primary is back, the same connection writes.
	require.NoError(t, c.StartNode(ctx, c.Primary))
	require.Eventually(t, func() bool {
		_, err := conn.Exec(ctx, "create table if not exists while_down(x int)")
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
}

// TestShutdownRightAfterAWrite: Shutdown comes while the relay reads a write's commit
// position back on the server (read-your-writes), before the lease ends. The client is
// told to go once the lease has ended, and nothing races (run with -race).
func TestShutdownRightAfterAWrite(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, time.Minute)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "create table if not exists shutdown_writes(x int)")
	require.NoError(t, err)
	for range 10 {
		p, err := integration.ServeProxy(pool.Config{Primary: c.Primary.URL("", ""), Replicas: c.ReplicaURLs()})
		require.NoError(t, err)
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		_, err = conn.Exec(ctx, "insert into shutdown_writes values (1)")
		require.NoError(t, err)
		require.NoError(t, p.Close(ctxT(t, 10*time.Second)))
		_, err = conn.Exec(ctx, "select 1")
		require.Error(t, err, "the client was told to go")
	}
}
