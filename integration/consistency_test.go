package integration_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// delayedCluster starts a cluster whose replica replays each commit 50 ms after the
// primary made it (recovery_min_apply_delay), with synchronous_commit = on: a read that
// goes to the replica right after a write misses it unless cmpool waits or reads on the
// primary.
func delayedCluster(t *testing.T) *integration.Cluster {
	t.Helper()
	return integration.StartCluster(t, integration.Options{Replicas: 1,
		Settings: map[string]string{"synchronous_commit": "on", "recovery_min_apply_delay": "50ms"}})
}

// routedOn starts cmpool with cfg in front of c and its replicas, and waits until a
// read reaches a replica.
func routedOn(t *testing.T, c *integration.Cluster, cfg pool.Config) *integration.Proxy {
	t.Helper()
	cfg.Replicas = c.ReplicaURLs()
	if cfg.ReplicaCheckInterval == 0 {
		cfg.ReplicaCheckInterval = 100 * time.Millisecond
	}
	p := integration.StartProxy(t, c, cfg)
	waitReplicaUsable(t, p)
	return p
}

func waitReplicaUsable(t *testing.T, p *integration.Proxy) {
	t.Helper()
	require.Eventually(t, func() bool {
		conn, err := pgx.Connect(context.Background(), p.URL("", ""))
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		var inRecovery bool
		return conn.QueryRow(context.Background(), "select pg_is_in_recovery()", pgx.QueryExecModeSimpleProtocol).Scan(&inRecovery) == nil && inRecovery
	}, 20*time.Second, 50*time.Millisecond, "reads never reached the replica")
}

// TestConsistencyPooledApplication runs the pooled-application workload (50 tasks over
// a pgxpool of 20 connections, each writing a row and reading it back at once) against
// a replica 50 ms behind, in each consistency mode. The default must never read stale,
// and still send reads to the replica.
func TestConsistencyPooledApplication(t *testing.T) {
	c := delayedCluster(t)
	ctx := ctxT(t, 3*time.Minute)
	const table = "ryw_pooled"
	require.NoError(t, integration.PrepareRYWLoad(ctx, c.Primary.URL("", ""), table))
	require.NoError(t, c.WaitReplication(ctx))
	for _, mode := range []string{"", "session", "global"} {
		name := mode
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			p := routedOn(t, c, pool.Config{Consistency: mode, DefaultPoolSize: 20})
			before := p.Server.Stat()
			res, err := integration.RYWLoad{URL: p.URL("", ""), Table: table}.Run(ctx)
			require.NoError(t, err)
			st := p.Server.Stat()
			t.Logf("consistency %s: %v; reads that waited %d, reads on the primary %d (at once, write not flushed: %d), reads of the write position %d",
				name, res, st.ReadWaits-before.ReadWaits, st.ReadsOnPrimary-before.ReadsOnPrimary,
				st.ReadsNotWaited-before.ReadsNotWaited, st.WritePositionReads-before.WritePositionReads)
			switch mode {
			case "", "global":
				require.Zero(t, res.Stale, "reads that missed their own task's write")
				require.Positive(t, res.OnReplica, "no read reached the replica")
			}
		})
	}
}

// TestConsistencyUnflushedWrite: with synchronous_commit = off (the shared cluster's
// setting) a commit reaches the replica only once the WAL writer flushes it. A read
// right after it must not wait rw_wait for what cannot arrive: it goes to the primary
// at once, and sees its write.
func TestConsistencyUnflushedWrite(t *testing.T) {
	c, p := routedProxy(t, pool.Config{RWWait: 500 * time.Millisecond})
	ctx := ctxT(t, time.Minute)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "drop table if exists ryw_unflushed; create table ryw_unflushed(id int primary key)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))
	var sc string
	require.NoError(t, admin.QueryRow(ctx, "show synchronous_commit").Scan(&sc))
	require.Equal(t, "off", sc)

	conn := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	const pairs = 100
	var lat []time.Duration
	// The first pair, not counted, opens cmpool's connections and prepares the statements.
	var before pool.Stat
	for i := -1; i < pairs; i++ {
		if i == 0 {
			before, lat = p.Server.Stat(), nil
		}
		_, err := conn.Exec(ctx, "insert into ryw_unflushed values ($1)", i)
		require.NoError(t, err)
		t0 := time.Now()
		var n int
		require.NoError(t, conn.QueryRow(ctx, "select count(*) from ryw_unflushed where id = $1", i).Scan(&n))
		lat = append(lat, time.Since(t0))
		require.Equal(t, 1, n, "read %d missed its write", i)
	}
	st := p.Server.Stat()
	slices.Sort(lat)
	notWaited, waited := st.ReadsNotWaited-before.ReadsNotWaited, st.ReadWaits-before.ReadWaits
	t.Logf("%d write+read pairs, synchronous_commit = off: read p50 %v, p99 %v; reads sent to the primary at once %d, reads that waited %d",
		pairs, lat[pairs/2], lat[pairs*99/100], notWaited, waited)
	t.Logf("slowest reads: %v", lat[pairs-3:])
	// rw_wait is 500 ms: had the reads waited it out, 100 of them would take 50 s.
	require.Positive(t, notWaited, "no read went to the primary at once")
	require.Less(t, waited, int64(pairs/2), "most reads waited for a replica that could not have their write")
}

// TestConsistencyPeers: two peered cmpool instances in front of the same primary and
// replica 50 ms behind. A write through one is seen by a read through the other at
// once; without peering the same read would find the replica stale.
func TestConsistencyPeers(t *testing.T) {
	c := delayedCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "drop table if exists ryw_peers; create table ryw_peers(id int primary key)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	oneCfg := pool.Config{PeerID: 1}
	twoCfg := pool.Config{PeerID: 2}
	one, two := routedOn(t, c, oneCfg), routedOn(t, c, twoCfg)
	writer := connect(t, one.URL("", ""), pgx.QueryExecModeCacheStatement)
	reader := connect(t, two.URL("", ""), pgx.QueryExecModeCacheStatement)
	const pairs = 20
	var writing time.Duration // the writes' time in the last stale call
	stale := func(base int) (n int) {
		writing = 0
		for i := base; i < base+pairs; i++ {
			t0 := time.Now()
			_, err := writer.Exec(ctx, "insert into ryw_peers values ($1)", i)
			writing += time.Since(t0)
			require.NoError(t, err)
			var seen int
			require.NoError(t, reader.QueryRow(ctx, "select count(*) from ryw_peers where id = $1", i).Scan(&seen))
			if seen == 0 {
				n++
			}
		}
		return n
	}

	// Not peered yet: the second instance knows nothing of the write.
	unpeered := stale(0)
	t.Logf("without peering: %d of %d reads through the other instance missed the write; a write took %v on average",
		unpeered, pairs, writing/pairs)
	require.Positive(t, unpeered, "the replica was never behind: this test shows nothing")

	peers := map[int]string{1: one.Addr, 2: two.Addr}
	oneCfg.Peers, twoCfg.Peers = peers, peers
	for _, x := range []struct {
		p   *integration.Proxy
		cfg pool.Config
	}{{one, oneCfg}, {two, twoCfg}} {
		x.cfg.Primary, x.cfg.Replicas, x.cfg.ReplicaCheckInterval = c.Primary.URL("", ""), c.ReplicaURLs(), 100*time.Millisecond
		require.NoError(t, x.p.Server.Reload(integration.WithTestAuth(x.cfg)))
	}
	waitReplicaUsable(t, two)
	before := two.Server.Stat()
	require.Zero(t, stale(1000), "reads through the peer missed writes")
	st := two.Server.Stat()
	t.Logf("peered: reads through the other instance that waited %d, went to the primary %d; a write took %v on average",
		st.ReadWaits-before.ReadWaits, st.ReadsOnPrimary-before.ReadsOnPrimary, writing/pairs)
}
