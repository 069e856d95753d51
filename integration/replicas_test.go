package integration_test

import (
	"context"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// twoReplicas starts a primary with two streaming replicas and cmpool routing over them.
func twoReplicas(t *testing.T, cfg pool.Config) (*integration.Cluster, *integration.Proxy) {
	t.Helper()
	c := integration.StartCluster(t, integration.Options{Replicas: 2})
	cfg.Replicas = c.ReplicaURLs()
	if cfg.ReplicaCheckInterval == 0 {
		cfg.ReplicaCheckInterval = 100 * time.Millisecond
	}
	p := integration.StartProxy(t, c, cfg)
	require.Eventually(t, func() bool {
		st := p.Server.Stat().Replicas
		return len(st) == 2 && st[0].State == "ok" && st[1].State == "ok"
	}, 10*time.Second, 50*time.Millisecond)
	return c, p
}

// commits returns the committed transactions each replica has served in database db.
func commits(t *testing.T, c *integration.Cluster, db string) []int64 {
	t.Helper()
	var out []int64
	for _, r := range c.Replicas {
		conn := connect(t, r.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		var n int64
		require.NoError(t, conn.QueryRow(ctxT(t, 5*time.Second), "select xact_commit from pg_stat_database where datname = $1", db).Scan(&n))
		require.NoError(t, conn.Close(context.Background()))
		out = append(out, n)
	}
	return out
}

func TestTwoReplicasBalanceBanAndReadYourWrites(t *testing.T) {
	c, p := twoReplicas(t, pool.Config{ReplicaBanTime: 300 * time.Millisecond, RWWait: 10 * time.Millisecond})
	ctx := ctxT(t, 3*time.Minute)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "create database bench2")
	require.NoError(t, err)
	out, err := exec.Command(pgTool(t, "pgbench"), "-i", "-q", "-s", "1", c.Primary.URL("bench2", "")).CombinedOutput()
	require.NoError(t, err, string(out))
	require.NoError(t, c.WaitReplication(ctx))

	t.Run("pgbench -S spreads reads over both replicas", func(t *testing.T) {
		routed := func() []int64 {
			var out []int64
			for _, r := range p.Server.Stat().Replicas {
				out = append(out, r.Routed)
			}
			return out
		}
		before, beforeCommits := routed(), commits(t, c, "bench2")
		out, err := exec.Command(pgTool(t, "pgbench"), "-n", "-S", "-c", "20", "-j", "2", "-t", "200", p.URL("bench2", "")).CombinedOutput()
		require.NoError(t, err, string(out))
		after := routed()
		total := int64(20 * 200)
		for i := range after {
			served := after[i] - before[i]
			t.Logf("replica %d was given %d of %d transactions", i, served, total)
			require.GreaterOrEqual(t, served, total/4, "replica %d", i)
		}
		// The replicas' own statistics agree, once their backends have reported.
		require.Eventually(t, func() bool {
			now := commits(t, c, "bench2")
			return now[0]-beforeCommits[0] >= total/4 && now[1]-beforeCommits[1] >= total/4
		}, 15*time.Second, 250*time.Millisecond, "pg_stat_database on the replicas")
	})

	t.Run("a killed replica is banned and reads go on", func(t *testing.T) {
		conn := connect(t, p.URL("bench2", ""), pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, c.StopNode(c.Replicas[0]))
		require.Eventually(t, func() bool { return p.Server.Stat().Replicas[0].State == "banned" }, 5*time.Second, 20*time.Millisecond)
		for range 50 {
			var port int
			require.NoError(t, conn.QueryRow(ctx, "select inet_server_port()").Scan(&port), "a read after the ban")
			require.Equal(t, c.Replicas[1].Port, port)
		}
		require.NoError(t, c.StartNode(ctx, c.Replicas[0]))
		require.Eventually(t, func() bool { return p.Server.Stat().Replicas[0].State == "ok" }, 15*time.Second, 50*time.Millisecond, "unbanned once back")
		seen := map[int]bool{}
		for range 20 {
			var port int
			require.NoError(t, conn.QueryRow(ctx, "select inet_server_port()").Scan(&port))
			seen[port] = true
		}
		require.True(t, seen[c.Replicas[0].Port] && seen[c.Replicas[1].Port], "both replicas serve again: %v", seen)
	})

	t.Run("read your writes 1000 times with one replica paused", func(t *testing.T) {
		_, err := admin.Exec(ctx, "create table ryw1000(id int primary key)")
		require.NoError(t, err)
		require.NoError(t, c.WaitReplication(ctx))
		pauseReplay(t, c.Replicas[0])

		conn := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
		var onReplica atomic.Int64
		for i := 1; i <= 1000; i++ {
			_, err := conn.Exec(ctx, "insert into ryw1000 values ($1)", i)
			require.NoError(t, err)
			var n int
			var inRecovery bool
			require.NoError(t, conn.QueryRow(ctx, "select count(*), pg_is_in_recovery() from ryw1000").Scan(&n, &inRecovery))
			require.Equal(t, i, n, "read %d must see the write before it", i)
			if inRecovery {
				onReplica.Add(1)
			}
		}
		st := p.Server.Stat()
		t.Logf("%d of 1000 reads were served by the unpaused replica; %d reads waited, %d went to the primary (%d at once: their write was not flushed)",
			onReplica.Load(), st.ReadWaits, st.ReadsOnPrimary, st.ReadsNotWaited)
		// With synchronous_commit = off (the harness's) most writes are not flushed yet
		// when their read comes: those reads go to the primary without waiting.
		require.Positive(t, st.ReadWaits+st.ReadsNotWaited)
	})
}
