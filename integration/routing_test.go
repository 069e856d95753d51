package integration_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/router"
)

// routedProxy starts cmpool in front of the shared primary and its replica, with
// routing on.
func routedProxy(t *testing.T, cfg pool.Config) (*integration.Cluster, *integration.Proxy) {
	t.Helper()
	c := sharedCluster(t)
	cfg.Replicas = c.ReplicaURLs()
	if cfg.ReplicaCheckInterval == 0 {
		cfg.ReplicaCheckInterval = 100 * time.Millisecond
	}
	p := integration.StartProxy(t, c, cfg)
	// Wait until the monitor has seen the replica healthy.
	require.Eventually(t, func() bool {
		conn, err := pgx.Connect(context.Background(), p.URL("", ""))
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		var inRecovery bool
		return conn.QueryRow(context.Background(), "select pg_is_in_recovery()", pgx.QueryExecModeSimpleProtocol).Scan(&inRecovery) == nil && inRecovery
	}, 10*time.Second, 50*time.Millisecond, "reads never reached the replica")
	return c, p
}

func onReplica(t *testing.T, conn *pgx.Conn, sql string, args ...any) bool {
	t.Helper()
	var inRecovery bool
	require.NoError(t, conn.QueryRow(ctxT(t, 10*time.Second), sql, args...).Scan(&inRecovery), sql)
	return inRecovery
}

func TestRoutingReadsAndWrites(t *testing.T) {
	// Per connection: each new connection below starts with no writes to see.
	c, p := routedProxy(t, pool.Config{Consistency: "session"})
	ctx := ctxT(t, 30*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, `drop table if exists routed; create table routed(id int);
		drop sequence if exists routed_seq; create sequence routed_seq;
		create or replace function routed_stable() returns int language sql stable as 'select 1';
		create or replace function routed_volatile() returns int language sql volatile as 'select 1'`)
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connect(t, p.URL("", ""), mode)
			require.True(t, onReplica(t, conn, "select pg_is_in_recovery()"), "a plain read")
			require.True(t, onReplica(t, conn, "select pg_is_in_recovery() from routed where id = $1 union all select pg_is_in_recovery()", 1))
			require.True(t, onReplica(t, conn, "select routed_stable() = 1 and pg_is_in_recovery()"), "a stable function")
			require.False(t, onReplica(t, conn, "select routed_volatile() = 1 and pg_is_in_recovery()"), "a volatile function")
			require.False(t, onReplica(t, conn, "select nextval('routed_seq') > 0 and pg_is_in_recovery()"), "nextval")
			require.False(t, onReplica(t, conn, "select pg_is_in_recovery() from (select 1) s for update"), "FOR UPDATE")
			require.False(t, onReplica(t, conn, "/* cmpool:primary */ select pg_is_in_recovery()"), "a primary hint")
			require.False(t, onReplica(t, conn, "with w as (insert into routed values (1) returning id) select pg_is_in_recovery() from w"), "a writable CTE")

			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			require.False(t, onReplica(t, conn, "select pg_is_in_recovery()"), "a plain BEGIN goes to the primary")
			require.NoError(t, tx.Commit(ctx))

			// A fresh session: this one's writes above make its reads wait for them.
			ro := connect(t, p.URL("", ""), mode)
			tx, err = ro.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
			require.NoError(t, err)
			require.True(t, onReplica(t, ro, "select pg_is_in_recovery()"), "BEGIN READ ONLY goes to a replica")
			require.True(t, onReplica(t, ro, "select pg_is_in_recovery()"), "for the whole transaction")
			require.NoError(t, tx.Commit(ctx))
		})
	}

	t.Run("SET cmpool.route", func(t *testing.T) {
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		_, err := conn.Exec(ctx, "SET cmpool.route = 'primary'")
		require.NoError(t, err)
		require.False(t, onReplica(t, conn, "select pg_is_in_recovery()"))
		var route string
		require.NoError(t, conn.QueryRow(ctx, "show cmpool.route").Scan(&route))
		require.Equal(t, "primary", route)
		_, err = conn.Exec(ctx, "SET cmpool.route = 'auto'")
		require.NoError(t, err)
		require.True(t, onReplica(t, conn, "select pg_is_in_recovery()"))
		_, err = conn.Exec(ctx, "SET cmpool.route = 'sideways'")
		require.Equal(t, "22023", pgCode(err))
	})

	t.Run("startup option", func(t *testing.T) {
		conn := connect(t, p.URL("", "")+"&options=-c%20cmpool.route%3Dprimary", pgx.QueryExecModeSimpleProtocol)
		require.False(t, onReplica(t, conn, "select pg_is_in_recovery()"))
	})
}

func TestRoutingDatabaseRoute(t *testing.T) {
	_, p := routedProxy(t, pool.Config{Databases: map[string]pool.Database{
		"postgres_ro": {DBName: "postgres", Route: "replica"},
	}})
	conn := connect(t, p.URL("postgres_ro", ""), pgx.QueryExecModeSimpleProtocol)
	require.True(t, onReplica(t, conn, "select pg_is_in_recovery()"))
	_, err := conn.Exec(ctxT(t, 10*time.Second), "create table ro_fails(x int)")
	require.Equal(t, "25006", pgCode(err), "a read-only database name refuses writes: %v", err)
}

// TestReadYourWrites pauses replay on the replica, so that only read-your-writes keeps a
// client from reading a snapshot without its own write.
func TestReadYourWrites(t *testing.T) {
	c, p := routedProxy(t, pool.Config{Consistency: "session", RWWait: 50 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "drop table if exists ryw; create table ryw(id int)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	replica := pauseReplay(t, c.Replicas[0])

	writer := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	other := connect(t, p.URL("", "")+"&application_name=other", pgx.QueryExecModeCacheStatement)
	for i := 1; i <= 5; i++ {
		_, err := writer.Exec(ctx, "insert into ryw values ($1)", i)
		require.NoError(t, err)
		var n int
		var inRecovery bool
		require.NoError(t, writer.QueryRow(ctx, "select count(*), pg_is_in_recovery() from ryw").Scan(&n, &inRecovery))
		require.Equal(t, i, n, "the writer must read its own writes")
		require.False(t, inRecovery, "the paused replica has not replayed them: the read goes to the primary")
	}
	// Another client, with no writes of its own, reads from the (stale) replica.
	var n int
	var inRecovery bool
	require.NoError(t, other.QueryRow(ctx, "select count(*), pg_is_in_recovery() from ryw").Scan(&n, &inRecovery))
	require.True(t, inRecovery)
	require.Equal(t, 0, n)

	// The writer's token makes the other client wait for, or avoid, stale replicas too.
	var token string
	require.NoError(t, writer.QueryRow(ctx, "show cmpool.last_write_lsn", pgx.QueryExecModeSimpleProtocol).Scan(&token))
	_, err = router.ParseLSN(token)
	require.NoError(t, err, "token %q", token)
	_, err = other.Exec(ctx, "set cmpool.min_lsn = '"+token+"'", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	require.NoError(t, other.QueryRow(ctx, "select count(*) from ryw").Scan(&n))
	require.Equal(t, 5, n)

	// Once the replica catches up, reads go back to it.
	_, err = replica.Exec(ctx, "select pg_wal_replay_resume()")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))
	require.Eventually(t, func() bool {
		var n int
		var inRecovery bool
		err := writer.QueryRow(ctx, "select count(*), pg_is_in_recovery() from ryw").Scan(&n, &inRecovery)
		return err == nil && n == 5 && inRecovery
	}, 5*time.Second, 50*time.Millisecond)
}

// TestReadOnlySafetyNet makes the router send a writing statement to the replica (a
// function that became volatile after its volatility was cached): the replica refuses
// it with 25006, and cmpool runs it on the primary instead, unseen by the client.
func TestReadOnlySafetyNet(t *testing.T) {
	c, p := routedProxy(t, pool.Config{})
	ctx := ctxT(t, 30*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, `drop table if exists safety; create table safety(x int);
		create or replace function safety_fn() returns int language sql stable as 'select 1'`)
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			// A fresh proxy each time, so the volatility cache starts empty.
			_, p := routedProxy(t, pool.Config{})
			conn := connect(t, p.URL("", ""), mode)
			require.True(t, onReplica(t, conn, "select safety_fn() = 1 and pg_is_in_recovery()"))
			_, err := admin.Exec(ctx, `create or replace function safety_fn() returns int language plpgsql volatile as
				$$ begin insert into safety values (1); return 1; end $$`)
			require.NoError(t, err)
			require.NoError(t, c.WaitReplication(ctx))

			var inRecovery bool
			require.NoError(t, conn.QueryRow(ctx, "select safety_fn() = 1 and pg_is_in_recovery()").Scan(&inRecovery),
				"the replica's 25006 must not reach the client")
			require.False(t, inRecovery, "the statement ran on the primary")
			require.EqualValues(t, 1, p.Server.Stat().ReadOnlyReplays)
			var n int
			require.NoError(t, admin.QueryRow(ctx, "select count(*) from safety").Scan(&n))
			require.Positive(t, n)
			_, err = admin.Exec(ctx, "create or replace function safety_fn() returns int language sql stable as 'select 1'")
			require.NoError(t, err)
			require.NoError(t, c.WaitReplication(ctx))
		})
	}
	_ = p
}

// TestFollowsPromotion promotes the replica with the old primary stopped, as a failover
// tool would: writes reach the new primary without restarting cmpool.
func TestFollowsPromotion(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	p := integration.StartProxy(t, c, pool.Config{Replicas: c.ReplicaURLs(), ReplicaCheckInterval: 100 * time.Millisecond})
	ctx := ctxT(t, 60*time.Second)
	before := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := before.Exec(ctx, "create table failover(x int); insert into failover values (1)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	require.NoError(t, c.StopNode(c.Primary))
	require.NoError(t, c.Promote(ctx, c.Replicas[0]))
	require.Eventually(t, func() bool { return p.Server.Stat().Promotions == 1 }, 10*time.Second, 50*time.Millisecond)

	for _, conn := range []*pgx.Conn{before, connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)} {
		_, err = conn.Exec(ctx, "insert into failover values (2)")
		require.NoError(t, err, "a write after the promotion")
		var port int
		var inRecovery bool
		require.NoError(t, conn.QueryRow(ctx, "select inet_server_port(), pg_is_in_recovery()").Scan(&port, &inRecovery))
		require.Equal(t, c.Replicas[0].Port, port, "the promoted replica serves")
		require.False(t, inRecovery)
	}
}

// A SET runs on the primary but writes nothing: it must not make the client's next reads
// wait for the replicas to replay everyone else's writes (PgJDBC sends two SETs at connect).
func TestRoutingSessionSetIsNoWrite(t *testing.T) {
	_, p := routedProxy(t, pool.Config{})
	ctx := ctxT(t, 30*time.Second)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connect(t, p.URL("", ""), mode)
			_, err := conn.Exec(ctx, "SET extra_float_digits = 3")
			require.NoError(t, err)
			_, err = conn.Exec(ctx, "SET application_name = 'PostgreSQL JDBC Driver'")
			require.NoError(t, err)
			var token string
			require.NoError(t, conn.QueryRow(ctx, "show cmpool.last_write_lsn", pgx.QueryExecModeSimpleProtocol).Scan(&token))
			require.Equal(t, "0/0", token, "a SET is no write to wait for")
			require.True(t, onReplica(t, conn, "select pg_is_in_recovery()"))
			var app string
			require.NoError(t, conn.QueryRow(ctx, "show application_name").Scan(&app))
			require.Equal(t, "PostgreSQL JDBC Driver", app, "the SET follows the client to the replica")
		})
	}
}

// TestRoutingRouterHook: a Config.Router sees each routed transaction's statement and
// cmpool's verdict, and may override it.
func TestRoutingRouterHook(t *testing.T) {
	var mu sync.Mutex
	var seen []pool.RouteRequest
	_, p := routedProxy(t, pool.Config{Router: pool.RouterFunc(func(r pool.RouteRequest) pool.Route {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		switch {
		case strings.Contains(r.Query, "as pinned"):
			return pool.RoutePrimary
		case strings.Contains(r.Query, "as offloaded"):
			return pool.RouteReplica
		}
		return pool.RouteDefault
	})})
	ctx := ctxT(t, 30*time.Second)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connect(t, p.URL("", ""), mode)
			require.True(t, onReplica(t, conn, "select pg_is_in_recovery()"), "the default stays")
			require.False(t, onReplica(t, conn, "select pg_is_in_recovery() as pinned"), "the hook pins it to the primary")
			// Forcing a write to a replica behaves like a replica hint: 25006, no move.
			_, err := conn.Exec(ctx, "select txid_current() as offloaded")
			require.Equal(t, "25006", pgCode(err), "got %v", err)
		})
	}
	mu.Lock()
	defer mu.Unlock()
	var write *pool.RouteRequest
	for i := range seen {
		if strings.Contains(seen[i].Query, "txid_current") {
			write = &seen[i]
		}
	}
	require.NotNil(t, write, "the hook saw the statement text")
	require.True(t, write.Write, "and cmpool's verdict")
	require.Equal(t, "postgres", write.Database)
}

// A write transaction costs no extra round trip: its commit position is read only when a read
// of that client follows, and concurrent readers share the reads. Every read still sees its
// own client's write.
func TestWritePositionReadLazily(t *testing.T) {
	c, p := routedProxy(t, pool.Config{RWWait: 2 * time.Second})
	ctx := ctxT(t, 60*time.Second)
	const db = "lazylsn"
	freshDatabase(t, direct(t, c), db)
	admin := connect(t, c.Primary.URL(db, ""), pgx.QueryExecModeSimpleProtocol)
	_, err := admin.Exec(ctx, "create table lazy(client int, n int)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	writer := connect(t, p.URL(db, ""), pgx.QueryExecModeCacheStatement)
	for i := range 30 {
		_, err := writer.Exec(ctx, "insert into lazy values (0, $1)", i)
		require.NoError(t, err)
	}
	tx, err := writer.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "update lazy set n = n + 1 where client = 0")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Zero(t, p.Server.Stat().WritePositionReads, "writes with no read after them read no position")

	var n int
	require.NoError(t, writer.QueryRow(ctx, "select count(*) from lazy where client = 0").Scan(&n))
	require.Equal(t, 30, n)
	require.EqualValues(t, 1, p.Server.Stat().WritePositionReads, "the first read after the writes reads it once")
	require.NoError(t, writer.QueryRow(ctx, "select count(*) from lazy where client = 0").Scan(&n))
	require.EqualValues(t, 1, p.Server.Stat().WritePositionReads, "a second read has it already")

	// Twenty clients write and read back at once, each seeing its own write.
	const clients = 20
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connect(t, p.URL(db, ""), pgx.QueryExecModeCacheStatement)
	}
	before := p.Server.Stat().WritePositionReads
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, conn := range conns {
		wg.Go(func() {
			for round := range 10 {
				if _, err := conn.Exec(ctx, "insert into lazy values ($1, $2)", i+1, round); err != nil {
					errs <- err
					return
				}
				var n int
				if err := conn.QueryRow(ctx, "select count(*) from lazy where client = $1", i+1).Scan(&n); err != nil {
					errs <- err
					return
				}
				if n != round+1 {
					errs <- fmt.Errorf("client %d round %d read %d rows: its own write is missing", i+1, round, n)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	reads := p.Server.Stat().WritePositionReads - before
	t.Logf("%d reads after writes needed %d position reads", clients*10, reads)
	require.LessOrEqual(t, reads, int64(clients*10))
	require.Positive(t, reads)
}

// With consistency = global, a client that wrote nothing still sees every write committed
// through this cmpool before its read began.
func TestReadYourWritesGlobal(t *testing.T) {
	c, p := routedProxy(t, pool.Config{Consistency: "global", RWWait: 50 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	const db = "globalryw"
	freshDatabase(t, direct(t, c), db)
	admin := connect(t, c.Primary.URL(db, ""), pgx.QueryExecModeSimpleProtocol)
	_, err := admin.Exec(ctx, "create table g(id int)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	pauseReplay(t, c.Replicas[0])

	writer := connect(t, p.URL(db, ""), pgx.QueryExecModeCacheStatement)
	reader := connect(t, p.URL(db, "")+"&application_name=reader", pgx.QueryExecModeCacheStatement)
	for i := 1; i <= 3; i++ {
		_, err := writer.Exec(ctx, "insert into g values ($1)", i)
		require.NoError(t, err)
		var n int
		var inRecovery bool
		require.NoError(t, reader.QueryRow(ctx, "select count(*), pg_is_in_recovery() from g").Scan(&n, &inRecovery))
		require.Equal(t, i, n, "the reader must see the writer's committed rows")
		require.False(t, inRecovery, "the paused replica has not replayed them")
	}
}
