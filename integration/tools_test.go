package integration_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// pgTool finds a PostgreSQL client program next to the server binaries or on PATH.
func pgTool(t *testing.T, name string) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(name)
	require.NoError(t, err, "%s not found", name)
	return p
}

func TestPsql(t *testing.T) {
	c, p := proxy(t, pool.Config{})
	_, err := direct(t, c).Exec(ctxT(t, 10*time.Second), "drop table if exists pt; create table pt(x int)")
	require.NoError(t, err)
	out, err := exec.Command(pgTool(t, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", p.URL("", ""),
		"-c", "select 1", "-c", "select current_setting('application_name')",
		"-c", `\copy pt from program 'seq 1 100'`,
		"-c", "select sum(x) from pt").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "1\npsql\nCOPY 100\n5050\n", string(out))

	out, err = exec.Command(pgTool(t, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", p.URL("", ""),
		"-c", "select 1/0").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "division by zero")
}

// TestPgbench runs pgbench's select-only and TPC-B workloads with 200 clients through a
// pool of 20, and checks that no more than 20 server connections ever reach the primary.
func TestPgbench(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 20})
	ctx := ctxT(t, 5*time.Minute)
	admin := direct(t, c)
	freshDatabase(t, admin, "bench")
	out, err := exec.Command(pgTool(t, "pgbench"), "-i", "-q", "-s", "1", c.Primary.URL("bench", "")).CombinedOutput()
	require.NoError(t, err, string(out))

	// pgbench -i's own backend may take a moment to exit.
	require.Eventually(t, func() bool {
		var n int
		return admin.QueryRow(ctx, "select count(*) from pg_stat_activity where datname = 'bench'").Scan(&n) == nil && n == 0
	}, 10*time.Second, 20*time.Millisecond)

	var mu sync.Mutex
	maxServers, maxHeld := 0, 0
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for sampleCtx.Err() == nil {
			var n int
			if err := admin.QueryRow(sampleCtx, "select count(*) from pg_stat_activity where datname = 'bench'").Scan(&n); err == nil {
				mu.Lock()
				maxServers = max(maxServers, n)
				mu.Unlock()
			}
			held := 0
			for _, ps := range p.Server.Stat().Pools {
				if ps.Database == "bench" {
					held += ps.Servers
				}
			}
			mu.Lock()
			maxHeld = max(maxHeld, held)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"select-only", []string{"-S"}},
		{"tpc-b", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-n", "-c", "200", "-j", "2", "-t", "25"}, tc.args...)
			args = append(args, p.URL("bench", ""))
			out, err := exec.Command(pgTool(t, "pgbench"), args...).CombinedOutput()
			require.NoError(t, err, string(out))
			processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(string(out))
			require.NotNil(t, processed, string(out))
			n, _ := strconv.Atoi(processed[1])
			require.Equal(t, 200*25, n, string(out))
			if strings.Contains(string(out), "number of failed transactions") {
				require.Contains(t, string(out), "number of failed transactions: 0 ", string(out))
			}
		})
	}
	stopSampling()
	sampler.Wait()
	require.Greater(t, maxServers, 0)
	require.LessOrEqual(t, maxHeld, 20, "server connections cmpool held (open or opening)")
	// The server's view may also count a backend still exiting after cmpool closed its
	// connection (a dead one found at checkout), for a few milliseconds.
	require.LessOrEqual(t, maxServers, 22, "server connections to the primary")
	t.Logf("at most %d server connections held (%d backends seen) for 200 clients", maxHeld, maxServers)
}

// TestToolsRouted runs psql and pgbench through cmpool with routing on: psql's reads land
// on the replica and its writes on the primary; pgbench's select-only workload, which
// fails a transaction that does not run on the replica, and its TPC-B workload, which
// writes, run in each of pgbench's protocols (simple, extended, prepared).
func TestToolsRouted(t *testing.T) {
	// Per connection: the replica-only pgbench runs right after the TPC-B runs' writes.
	c, p := routedProxy(t, pool.Config{Consistency: "session"})
	ctx := ctxT(t, 5*time.Minute)
	admin := direct(t, c)

	t.Run("psql", func(t *testing.T) {
		_, err := admin.Exec(ctx, "drop table if exists routed_psql; create table routed_psql(x int)")
		require.NoError(t, err)
		require.NoError(t, c.WaitReplication(ctx))
		out, err := exec.Command(pgTool(t, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", p.URL("", ""),
			"-c", "select pg_is_in_recovery()",
			"-c", "insert into routed_psql select generate_series(1, 10) returning pg_is_in_recovery()",
			"-c", `\copy routed_psql from program 'seq 11 20'`,
			"-c", "select sum(x), pg_is_in_recovery() from routed_psql").CombinedOutput()
		require.NoError(t, err, string(out))
		// The insert runs on the primary; the last read sees both writes (read-your-writes),
		// on the replica or, if it lags, on the primary.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Equal(t, []string{"t", "f", "f", "f", "f", "f", "f", "f", "f", "f", "f", "INSERT 0 10", "COPY 10"}, lines[:13], string(out))
		require.Regexp(t, `^210\|[tf]$`, lines[13])
	})

	freshDatabase(t, admin, "bench_routed")
	out, err := exec.Command(pgTool(t, "pgbench"), "-i", "-q", "-s", "1", c.Primary.URL("bench_routed", "")).CombinedOutput()
	require.NoError(t, err, string(out))
	require.NoError(t, c.WaitReplication(ctx))
	script := filepath.Join(t.TempDir(), "on_replica.sql")
	require.NoError(t, os.WriteFile(script, []byte(
		"\\set aid random(1, 100000)\n"+
			"select abalance, pg_is_in_recovery()::int as rec from pgbench_accounts where aid = :aid \\gset\n"+
			"\\if :rec = 0\n"+
			"select 1/0;\n"+ // a read that reached the primary fails the run
			"\\endif\n"), 0o644))

	for _, mode := range []string{"simple", "extended", "prepared"} {
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"replica-reads", []string{"-f", script}},
			{"tpc-b", nil},
		} {
			t.Run("pgbench-"+mode+"-"+tc.name, func(t *testing.T) {
				args := append([]string{"-n", "-M", mode, "-c", "8", "-j", "2", "-t", "25"}, tc.args...)
				args = append(args, p.URL("bench_routed", ""))
				out, err := exec.Command(pgTool(t, "pgbench"), args...).CombinedOutput()
				require.NoError(t, err, string(out))
				processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(string(out))
				require.NotNil(t, processed, string(out))
				require.Equal(t, strconv.Itoa(8*25), processed[1], string(out))
			})
		}
	}
}
