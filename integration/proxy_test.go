package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestQueryExecModes(t *testing.T) {
	_, p := proxy(t, pool.Config{})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connect(t, p.URL("", ""), mode)
			ctx := ctxT(t, 30*time.Second)
			for i := range 50 {
				var n int
				var s string
				require.NoError(t, conn.QueryRow(ctx, "select $1::int + 1, $2::text", i, "x'y").Scan(&n, &s))
				require.Equal(t, i+1, n)
				require.Equal(t, "x'y", s)
			}
			rows, err := conn.Query(ctx, "select g from generate_series(1, 1000) g")
			require.NoError(t, err)
			sum := 0
			for rows.Next() {
				var g int
				require.NoError(t, rows.Scan(&g))
				sum += g
			}
			require.NoError(t, rows.Err())
			require.Equal(t, 500500, sum)

			// An error leaves the connection usable.
			_, err = conn.Exec(ctx, "select 1/0")
			require.Equal(t, "22012", pgCode(err))
			var one int
			require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))
		})
	}
}

func TestMultiStatementString(t *testing.T) {
	_, p := proxy(t, pool.Config{})
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	ctx := ctxT(t, 30*time.Second)
	results, err := conn.PgConn().Exec(ctx, "create temp table ms(x int); insert into ms values (1),(2); select sum(x) from ms; drop table ms").ReadAll()
	require.NoError(t, err)
	require.Len(t, results, 4)
	require.Equal(t, "INSERT 0 2", results[1].CommandTag.String())
	require.Equal(t, "3", string(results[2].Rows[0][0]))

	// An error in the middle stops the rest and rolls the implicit transaction back.
	_, err = conn.PgConn().Exec(ctx, "create table ms2(x int); select 1/0; create table ms3(x int)").ReadAll()
	require.Equal(t, "22012", pgCode(err))
	var n int
	require.NoError(t, conn.QueryRow(ctx, "select count(*) from pg_class where relname in ('ms2','ms3')").Scan(&n))
	require.Equal(t, 0, n)
}

func TestPipelineWithErrorInTheMiddle(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	ctx := ctxT(t, 30*time.Second)
	_, err := direct(t, c).Exec(ctx, "drop table if exists pipe; create table pipe(x int)")
	require.NoError(t, err)

	pl := conn.PgConn().StartPipeline(ctx)
	pl.SendQueryParams("insert into pipe values (1)", nil, nil, nil, nil)
	pl.SendQueryParams("select 1/0", nil, nil, nil, nil)
	pl.SendQueryParams("insert into pipe values (2)", nil, nil, nil, nil)
	require.NoError(t, pl.Sync())
	pl.SendQueryParams("insert into pipe values (3)", nil, nil, nil, nil)
	require.NoError(t, pl.Sync())

	errs := pipelineOutcomes(t, pl, 2)
	require.NoError(t, pl.Close())
	// The first batch failed as a unit at the second statement; the third statement was
	// skipped; the second batch ran.
	require.Equal(t, []string{"", "22012", "sync", "", "sync"}, errs)

	var got []int
	rows, err := conn.Query(ctx, "select x from pipe order by x")
	require.NoError(t, err)
	for rows.Next() {
		var x int
		require.NoError(t, rows.Scan(&x))
		got = append(got, x)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int{3}, got)
	assertNoDirtyServers(t, c)
}

func TestCopyInAndOut10MB(t *testing.T) {
	c, p := proxy(t, pool.Config{})
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	ctx := ctxT(t, 60*time.Second)
	_, err := direct(t, c).Exec(ctx, "drop table if exists copyt; create table copyt(id int, payload text)")
	require.NoError(t, err)

	var in bytes.Buffer
	line := strings.Repeat("x", 200)
	rows := 0
	for in.Len() < 10<<20 {
		fmt.Fprintf(&in, "%d\t%s\n", rows, line)
		rows++
	}
	want := in.Bytes()
	tag, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(want), "COPY copyt FROM STDIN")
	require.NoError(t, err)
	require.EqualValues(t, rows, tag.RowsAffected())

	var out bytes.Buffer
	tag, err = conn.PgConn().CopyTo(ctx, &out, "COPY (select * from copyt order by id) TO STDOUT")
	require.NoError(t, err)
	require.EqualValues(t, rows, tag.RowsAffected())
	require.True(t, bytes.Equal(want, out.Bytes()), "COPY OUT returned different bytes")

	// A failing COPY IN leaves the session usable and the server clean.
	_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader("not-a-number\tx\n"), "COPY copyt FROM STDIN")
	require.Equal(t, "22P02", pgCode(err))
	var n int
	require.NoError(t, conn.QueryRow(ctx, "select count(*) from copyt").Scan(&n))
	require.Equal(t, rows, n)
	assertNoDirtyServers(t, c)
}

func TestClientKilledMidTransaction(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 30*time.Second)
	_, err := direct(t, c).Exec(ctx, "drop table if exists locked; create table locked(id int primary key, v int); insert into locked values (1, 0)")
	require.NoError(t, err)

	victim := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err = victim.Exec(ctx, "begin; update locked set v = 42 where id = 1")
	require.NoError(t, err)
	// Vanish without a Terminate message.
	require.NoError(t, victim.PgConn().Conn().Close())

	next := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var v int
	require.NoError(t, next.QueryRow(ctx, "select v from locked where id = 1 for update nowait").Scan(&v))
	require.Equal(t, 0, v, "the dead client's update must be rolled back")
	require.Equal(t, byte('I'), next.PgConn().TxStatus())
}

func TestCancelOnlyCancelsTheTarget(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 4})
	ctx := ctxT(t, 30*time.Second)
	victim := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	bystander := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)

	var wg sync.WaitGroup
	var bystanderErr error
	wg.Go(func() {
		_, bystanderErr = bystander.Exec(ctx, "select pg_sleep(1.5)")
	})
	var victimErr error
	var elapsed time.Duration
	wg.Go(func() {
		start := time.Now()
		_, victimErr = victim.Exec(ctx, "select pg_sleep(10)")
		elapsed = time.Since(start)
	})
	time.Sleep(300 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, victim.PgConn().CancelRequest(cctx))
	wg.Wait()
	require.Equal(t, "57014", pgCode(victimErr))
	require.Less(t, elapsed, 5*time.Second)
	require.NoError(t, bystanderErr, "the cancel must not reach another client's query")

	// Both sessions go on working.
	var n int
	require.NoError(t, victim.QueryRow(ctx, "select 1").Scan(&n))
	require.NoError(t, bystander.QueryRow(ctx, "select 1").Scan(&n))
}

func TestMaxClientConn(t *testing.T) {
	_, p := proxy(t, pool.Config{MaxClientConn: 2})
	connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := pgx.Connect(ctxT(t, 10*time.Second), p.URL("", ""))
	require.Error(t, err)
	require.Equal(t, "53300", pgCode(err), "got %v", err)
}

func TestQueryWaitTimeout(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: 500 * time.Millisecond})
	ctx := ctxT(t, 30*time.Second)
	holder := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	waiter := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	// A BEGIN with an option takes the server at once (a plain one is deferred).
	_, err := holder.Exec(ctx, "begin isolation level read committed")
	require.NoError(t, err)

	start := time.Now()
	var n int
	err = waiter.QueryRow(ctx, "select $1::int", 1).Scan(&n)
	require.Equal(t, "57014", pgCode(err), "got %v", err)
	require.Contains(t, err.Error(), "query_wait_timeout")
	require.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)

	// Once the holder commits, the waiter's session works again.
	_, err = holder.Exec(ctx, "commit")
	require.NoError(t, err)
	require.NoError(t, waiter.QueryRow(ctx, "select $1::int", 7).Scan(&n))
	require.Equal(t, 7, n)
}

func TestStartupParametersPerClient(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 30*time.Second)
	open := func(tz, app string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(p.URL("", ""))
		require.NoError(t, err)
		cfg.RuntimeParams["timezone"] = tz
		cfg.RuntimeParams["application_name"] = app
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		conn, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	a := open("America/New_York", "client-a")
	b := open("Asia/Tokyo", "client-b")
	require.Equal(t, "America/New_York", a.PgConn().ParameterStatus("TimeZone"))
	for range 5 {
		for _, tc := range []struct {
			conn     *pgx.Conn
			tz, name string
		}{{a, "America/New_York", "client-a"}, {b, "Asia/Tokyo", "client-b"}} {
			var tz, name string
			require.NoError(t, tc.conn.QueryRow(ctx, "select current_setting('TimeZone'), current_setting('application_name')").Scan(&tz, &name))
			require.Equal(t, tc.tz, tz)
			require.Equal(t, tc.name, name)
		}
	}
	// A SET in one client's session follows that client, not the server.
	_, err := a.Exec(ctx, "set timezone = 'Europe/Paris'")
	require.NoError(t, err)
	var tz string
	require.NoError(t, b.QueryRow(ctx, "show timezone").Scan(&tz))
	require.Equal(t, "Asia/Tokyo", tz)
	require.NoError(t, a.QueryRow(ctx, "show timezone").Scan(&tz))
	require.Equal(t, "Europe/Paris", tz)

	// options=-c is applied too.
	conn := connect(t, p.URL("", "")+"&options=-c%20work_mem%3D7MB", pgx.QueryExecModeSimpleProtocol)
	var wm string
	require.NoError(t, conn.QueryRow(ctx, "show work_mem").Scan(&wm))
	require.Equal(t, "7MB", wm)
	require.NoError(t, b.QueryRow(ctx, "show work_mem").Scan(&wm))
	require.Equal(t, "4MB", wm)
}

func TestStatementModeRefusesTransactions(t *testing.T) {
	_, p := proxy(t, pool.Config{PoolMode: pool.ModeStatement, DefaultPoolSize: 2})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := conn.Exec(ctx, "begin")
	require.Equal(t, "0A000", pgCode(err), "got %v", err)
	require.Contains(t, err.Error(), "statement pooling mode")
	require.Equal(t, byte('I'), conn.PgConn().TxStatus())
	var n int
	require.NoError(t, conn.QueryRow(ctx, "select 41 + 1").Scan(&n))
	require.Equal(t, 42, n)
}

func TestSessionModeKeepsStateAndResets(t *testing.T) {
	_, p := proxy(t, pool.Config{PoolMode: pool.ModeSession, DefaultPoolSize: 1})
	ctx := ctxT(t, 30*time.Second)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := a.Exec(ctx, "create temp table sess(x int); insert into sess values (1); prepare q as select count(*) from sess")
	require.NoError(t, err)
	var n int
	require.NoError(t, a.QueryRow(ctx, "execute q").Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, a.Close(ctx))

	// The next client gets the same (only) server, reset.
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, b.QueryRow(ctx, "select count(*) from pg_prepared_statements").Scan(&n))
	require.Equal(t, 0, n)
	_, err = b.Exec(ctx, "select * from sess")
	require.Equal(t, "42P01", pgCode(err))
}

func TestServerKilledMidTransaction(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("", "")+"&application_name=doomed", pgx.QueryExecModeSimpleProtocol)
	_, err := conn.Exec(ctx, "begin; select 1")
	require.NoError(t, err)
	_, err = direct(t, c).Exec(ctx, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'doomed'")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "select 1")
	require.Error(t, err)

	// New clients are unaffected.
	other := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var n int
	require.NoError(t, other.QueryRow(ctx, "select 1").Scan(&n))
}

func TestUnknownDatabaseGetsServerError(t *testing.T) {
	_, p := proxy(t, pool.Config{})
	_, err := pgx.Connect(ctxT(t, 10*time.Second), p.URL("no_such_db", ""))
	require.Equal(t, "3D000", pgCode(err), "got %v", err)
}

// assertNoDirtyServers checks that no server connection is left inside a transaction.
func assertNoDirtyServers(t *testing.T, c *integration.Cluster) {
	t.Helper()
	var n int
	err := direct(t, c).QueryRow(ctxT(t, 10*time.Second),
		"select count(*) from pg_stat_activity where backend_type = 'client backend' and state like 'idle in transaction%'").Scan(&n)
	require.NoError(t, err)
	require.Zero(t, n, "server connections left idle in transaction")
}

func TestServerIdleTimeoutAndMinPoolSize(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	freshDatabase(t, admin, "idlepool")
	p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 10, MinPoolSize: 2, ServerIdleTimeout: time.Second})
	servers := func() int {
		var n int
		require.NoError(t, admin.QueryRow(ctx, "select count(*) from pg_stat_activity where datname = 'idlepool'").Scan(&n))
		return n
	}

	// Six clients in transactions at once need six servers.
	var conns []*pgx.Conn
	for range 6 {
		conn := connect(t, p.URL("idlepool", ""), pgx.QueryExecModeSimpleProtocol)
		_, err := conn.Exec(ctx, "begin; select 1") // not a plain BEGIN, which is deferred
		require.NoError(t, err)
		conns = append(conns, conn)
	}
	require.Equal(t, 6, servers())
	for _, conn := range conns {
		_, err := conn.Exec(ctx, "commit")
		require.NoError(t, err)
	}
	// Idle servers are closed after server_idle_timeout, down to min_pool_size.
	require.Eventually(t, func() bool { return servers() == 2 }, 10*time.Second, 100*time.Millisecond)
	time.Sleep(2 * time.Second)
	require.Equal(t, 2, servers(), "min_pool_size connections stay open")
}

func TestServerConnectTimeout(t *testing.T) {
	// A server that accepts TCP and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	p, err := integration.ServeProxy(pool.Config{
		Primary:              "postgres://postgres@" + ln.Addr().String() + "/postgres?sslmode=disable",
		ServerConnectTimeout: 500 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) })

	start := time.Now()
	_, err = pgx.Connect(ctxT(t, 10*time.Second), p.URL("", ""))
	require.Equal(t, "08006", pgCode(err), "got %v", err)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestPrimaryDown(t *testing.T) {
	// Nothing listens on this port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	p, err := integration.ServeProxy(pool.Config{Primary: "postgres://postgres@" + addr + "/postgres?sslmode=disable"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	_, err = pgx.Connect(ctxT(t, 10*time.Second), p.URL("", ""))
	require.Equal(t, "08006", pgCode(err), "got %v", err)
	require.Contains(t, err.Error(), "could not connect to server")
}

func TestGracefulShutdownWaitsForTransactions(t *testing.T) {
	c := sharedCluster(t)
	p, err := integration.ServeProxy(pool.Config{Primary: c.Primary.URL("", "")})
	require.NoError(t, err)
	ctx := ctxT(t, 30*time.Second)
	busy := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	idle := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err = busy.Exec(ctx, "begin")
	require.NoError(t, err)

	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- p.Close(ctx) }()

	// The idle client is told to go at once.
	require.Eventually(t, func() bool {
		_, err := idle.Exec(ctx, "select 1")
		return err != nil
	}, 5*time.Second, 50*time.Millisecond)

	// The busy one finishes its transaction, then is closed.
	_, err = busy.Exec(ctx, "select 1")
	require.NoError(t, err)
	_, err = busy.Exec(ctx, "commit")
	require.NoError(t, err)
	select {
	case err := <-shutdownDone:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish after the last transaction")
	}
	_, err = pgx.Connect(ctxT(t, 5*time.Second), p.URL("", ""))
	require.Error(t, err)
}
