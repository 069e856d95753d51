package integration_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// loginRoles creates login roles (superusers, so that they may read pg_stat_activity
// and kill backends) on the cluster, once.
func loginRoles(t *testing.T, c *integration.Cluster, names ...string) {
	t.Helper()
	admin := direct(t, c)
	for _, n := range names {
		_, err := admin.Exec(ctxT(t, 30*time.Second), fmt.Sprintf(
			"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s LOGIN SUPERUSER; END IF; END$$", n, n))
		require.NoError(t, err)
	}
}

// trustUsers lists users for a proxy with trust authentication (listing users admits
// only them).
func trustUsers(cfg pool.Config, users map[string]pool.User) pool.Config {
	cfg.AuthType = pool.AuthTrust
	cfg.Users = users
	if _, ok := users["postgres"]; !ok {
		cfg.Users["postgres"] = pool.User{}
	}
	return cfg
}

func backendPID(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var pid int
	require.NoError(t, conn.QueryRow(ctxT(t, 30*time.Second), "select pg_backend_pid()").Scan(&pid))
	return pid
}

// TestUserPoolMode: a user's pool_mode wins over the database's and the global one. With
// session mode everywhere else and one server per pool, two clients of a transaction-mode
// user share their one server, transaction by transaction; a session-mode user's client
// keeps its server, and a second client of that user waits for it in vain.
func TestUserPoolMode(t *testing.T) {
	c := sharedCluster(t)
	loginRoles(t, c, "lim_sess", "lim_tx")
	p := integration.StartProxy(t, c, trustUsers(pool.Config{
		PoolMode: pool.ModeSession, DefaultPoolSize: 1, QueryWaitTimeout: time.Second,
		Databases: map[string]pool.Database{"postgres": {PoolMode: pool.ModeSession}},
	}, map[string]pool.User{"lim_sess": {}, "lim_tx": {PoolMode: pool.ModeTransaction}}))

	tx1 := connect(t, p.URL("postgres", "lim_tx"), pgx.QueryExecModeSimpleProtocol)
	tx2 := connect(t, p.URL("postgres", "lim_tx"), pgx.QueryExecModeSimpleProtocol)
	pid := backendPID(t, tx1)
	require.Equal(t, pid, backendPID(t, tx2), "both transaction-mode clients use the one server")
	require.Equal(t, pid, backendPID(t, tx1))

	s1 := connect(t, p.URL("postgres", "lim_sess"), pgx.QueryExecModeSimpleProtocol)
	spid := backendPID(t, s1)
	require.NotEqual(t, pid, spid)
	_, err := s1.Exec(ctxT(t, 10*time.Second), "select 1")
	require.NoError(t, err)
	require.Equal(t, spid, backendPID(t, s1), "a session-mode client keeps its server")
	// The session's one server is held: a second client of that user gets none in time.
	cfg, err := pgx.ParseConfig(p.URL("postgres", "lim_sess"))
	require.NoError(t, err)
	_, err = pgx.ConnectConfig(ctxT(t, 30*time.Second), cfg)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "57014", pgErr.Code)

	modes := map[string]pool.Mode{}
	for _, ps := range p.Server.Stat().Pools {
		if ps.Database == "postgres" {
			modes[ps.User] = ps.Mode
		}
	}
	require.Equal(t, pool.ModeTransaction, modes["lim_tx"])
	require.Equal(t, pool.ModeSession, modes["lim_sess"])
}

// TestDatabaseServerParams: a database's client_encoding, datestyle and timezone are set
// on its server connections at login, so that clients that ask for none see them, while a
// client's own value still wins; another database keeps the server's defaults.
func TestDatabaseServerParams(t *testing.T) {
	c := sharedCluster(t)
	p := integration.StartProxy(t, c, pool.Config{
		Databases: map[string]pool.Database{
			"tzdb": {DBName: "postgres", ClientEncoding: "LATIN1", DateStyle: "SQL, DMY", TimeZone: "Asia/Tokyo", MinPoolSize: 2},
		},
	})
	ctx := ctxT(t, 30*time.Second)
	// pgconn asks for no client_encoding unless told.
	conn, err := pgconn.Connect(ctx, p.URL("tzdb", ""))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "select current_setting('TimeZone'), current_setting('DateStyle'), current_setting('client_encoding')", nil, nil, nil, nil).Read()
	require.NoError(t, res.Err)
	require.Equal(t, []string{"Asia/Tokyo", "SQL, DMY", "LATIN1"}, []string{string(res.Rows[0][0]), string(res.Rows[0][1]), string(res.Rows[0][2])})
	require.Equal(t, "Asia/Tokyo", conn.ParameterStatus("TimeZone"))

	own := connect(t, p.URL("tzdb", "")+"&timezone=UTC&client_encoding=UTF8", pgx.QueryExecModeSimpleProtocol)
	var tz string
	require.NoError(t, own.QueryRow(ctx, "select current_setting('TimeZone')").Scan(&tz))
	require.Equal(t, "UTC", tz, "the client's own value wins")

	plain := connect(t, p.URL("postgres", ""), pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, plain.QueryRow(ctx, "select current_setting('TimeZone')").Scan(&tz))
	require.NotEqual(t, "Asia/Tokyo", tz)

	// min_pool_size for the database: two servers stay open once it has been used.
	require.Eventually(t, func() bool {
		servers := 0
		for _, ps := range p.Server.Stat().Pools {
			if ps.Database == "tzdb" {
				servers += ps.Servers
			}
		}
		return servers == 2
	}, 20*time.Second, 50*time.Millisecond)
}

// TestIgnoreStartupParameters: a client sending a startup parameter the server does not
// know is refused, unless ignore_startup_parameters lists it; then it is let in and the
// parameter is dropped.
func TestIgnoreStartupParameters(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 30*time.Second)
	strict := integration.StartProxy(t, c, pool.Config{})
	cfg, err := pgconn.ParseConfig(strict.URL("", ""))
	require.NoError(t, err)
	cfg.RuntimeParams["cmpool_test_unknown"] = "1"
	cfg.RuntimeParams["extra_float_digits"] = "2"
	_, err = pgconn.ConnectConfig(ctx, cfg)
	require.Error(t, err, "an unknown startup parameter is refused")

	lax := integration.StartProxy(t, c, pool.Config{IgnoreStartupParameters: []string{"CMPOOL_TEST_UNKNOWN", "extra_float_digits"}})
	cfg, err = pgconn.ParseConfig(lax.URL("", ""))
	require.NoError(t, err)
	cfg.RuntimeParams["cmpool_test_unknown"] = "1"
	cfg.RuntimeParams["extra_float_digits"] = "2"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "select current_setting('extra_float_digits')", nil, nil, nil, nil).Read()
	require.NoError(t, res.Err)
	require.Equal(t, "1", string(res.Rows[0][0]), "an ignored parameter is not applied")
}

// sampleBackends counts, every 20ms until stop is called, the server connections of the
// given role or database (datname or usename = name) and returns the most it saw.
func sampleBackends(t *testing.T, c *integration.Cluster, column, name string) (stop func() int) {
	t.Helper()
	admin := direct(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	most := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var n int
			if err := admin.QueryRow(ctx, "select count(*) from pg_stat_activity where "+column+" = $1 and pid <> pg_backend_pid()", name).Scan(&n); err == nil {
				most = max(most, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int {
		cancel()
		<-done
		return most
	}
}

// runPgbench runs pgbench with args against url and checks that every transaction
// succeeded; it returns pgbench's output.
func runPgbench(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, err := exec.Command(pgTool(t, "pgbench"), args...).CombinedOutput()
	require.NoError(t, err, string(out))
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(string(out))
	require.NotNil(t, processed, string(out))
	n, _ := strconv.Atoi(processed[1])
	require.Equal(t, want, n, string(out))
	if strings.Contains(string(out), "number of failed transactions") {
		require.Contains(t, string(out), "number of failed transactions: 0 ", string(out))
	}
	return string(out)
}

// TestMaxDBConnections: 200 pgbench clients, as two users with pools of 20 each, on one
// database limited to 8 server connections: the database never has more than 8 backends,
// and every transaction succeeds (clients wait for a connection to free up, and idle
// servers of the other user's pool are closed to make room).
func TestMaxDBConnections(t *testing.T) {
	c := sharedCluster(t)
	loginRoles(t, c, "lim_a", "lim_b")
	const maxDB = 8
	p := integration.StartProxy(t, c, trustUsers(pool.Config{DefaultPoolSize: 20, MaxDBConnections: maxDB},
		map[string]pool.User{"lim_a": {}, "lim_b": {}}))
	admin := direct(t, c)
	freshDatabase(t, admin, "limdb")
	out, err := exec.Command(pgTool(t, "pgbench"), "-i", "-q", "-s", "1", c.Primary.URL("limdb", "")).CombinedOutput()
	require.NoError(t, err, string(out))
	ctx := ctxT(t, 5*time.Minute)
	require.Eventually(t, func() bool {
		var n int
		return admin.QueryRow(ctx, "select count(*) from pg_stat_activity where datname = 'limdb'").Scan(&n) == nil && n == 0
	}, 10*time.Second, 20*time.Millisecond)

	stop := sampleBackends(t, c, "datname", "limdb")
	var wg sync.WaitGroup
	for _, user := range []string{"lim_a", "lim_b"} {
		wg.Go(func() {
			runPgbench(t, 100*25, "-n", "-c", "100", "-j", "2", "-t", "25", "-S", p.URL("limdb", user))
		})
	}
	wg.Wait()
	most := stop()
	require.Greater(t, most, 0)
	// A backend cmpool closed may still be exiting for a few milliseconds; cmpool's own
	// count is exact.
	require.LessOrEqual(t, most, maxDB+1, "backends of limdb")
	// A server closed to make room for another pool's leaves the count as its close ends.
	servers := 0
	require.Eventually(t, func() bool {
		servers = 0
		for _, ps := range p.Server.Stat().Pools {
			if ps.Database == "limdb" {
				servers += ps.Servers
			}
		}
		return servers <= maxDB
	}, 5*time.Second, 20*time.Millisecond, "servers of limdb: %d", servers)
	t.Logf("at most %d backends of limdb seen for 200 clients (max_db_connections %d)", most, maxDB)
}

// TestMaxUserConnections: one user's server connections over two databases stay within
// its max_user_connections; a client that finds the limit full waits for a connection of
// the other database to go idle, which is closed for it.
func TestMaxUserConnections(t *testing.T) {
	c := sharedCluster(t)
	loginRoles(t, c, "lim_u")
	p := integration.StartProxy(t, c, trustUsers(pool.Config{DefaultPoolSize: 5, QueryWaitTimeout: 20 * time.Second},
		map[string]pool.User{"lim_u": {MaxUserConnections: 2}}))
	admin := direct(t, c)
	freshDatabase(t, admin, "limdb2")
	ctx := ctxT(t, time.Minute)
	stop := sampleBackends(t, c, "usename", "lim_u")

	// A client of limdb2 logs in; its server stays idle in the pool.
	other := connect(t, p.URL("limdb2", "lim_u"), pgx.QueryExecModeSimpleProtocol)
	// Two clients of postgres hold two servers in transactions: the limit is full, and
	// the idle server of limdb2 was closed to make room.
	var held []*pgx.Conn
	for range 2 {
		conn := connect(t, p.URL("postgres", "lim_u"), pgx.QueryExecModeSimpleProtocol)
		_, err := conn.Exec(ctx, "begin; select 1")
		require.NoError(t, err)
		held = append(held, conn)
	}
	got := make(chan error, 1)
	go func() {
		_, err := other.Exec(ctx, "select pg_sleep(0)")
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a third server connection of lim_u was opened: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	// One transaction ends: its server goes idle and is closed to make room.
	_, err := held[0].Exec(ctx, "commit")
	require.NoError(t, err)
	require.NoError(t, <-got)
	_, err = held[1].Exec(ctx, "commit")
	require.NoError(t, err)
	require.LessOrEqual(t, stop(), 2+1, "backends of lim_u (one may be exiting)")
}

// poolServers is how many server connections p holds for database.
func poolServers(p *integration.Proxy, database string) int {
	n := 0
	for _, ps := range p.Server.Stat().Pools {
		if ps.Database == database {
			n += ps.Servers
		}
	}
	return n
}

// TestReservePool: with the pool's one server held, a second client waits; only once it
// has waited reserve_pool_timeout does it get a reserve connection. With the reserve full
// too, a third client waits for one of them to free up.
func TestReservePool(t *testing.T) {
	const wait = 1500 * time.Millisecond
	_, p := adminProxy(t, pool.Config{DefaultPoolSize: 1, ReservePoolSize: 1, ReservePoolTimeout: wait, QueryWaitTimeout: time.Minute,
		MaxDBConnections: 5})
	ctx := ctxT(t, time.Minute)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	c3 := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := a.Exec(ctx, "begin; select 1")
	require.NoError(t, err)
	require.Equal(t, 1, poolServers(p, "postgres"))

	start := time.Now()
	got := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "begin; select 1")
		got <- err
	}()
	time.Sleep(wait / 2)
	require.Equal(t, 1, poolServers(p, "postgres"), "no reserve connection before reserve_pool_timeout")
	require.NoError(t, <-got)
	require.GreaterOrEqual(t, time.Since(start), wait, "the reserve is used only after reserve_pool_timeout")
	require.Equal(t, 2, poolServers(p, "postgres"), "one reserve connection")
	console := adminConn(t, p, "pgbouncer", "postgres")
	names, _, rows := show(t, console, "SHOW POOLS")
	require.Equal(t, "2", column(t, names, rows, "database", "postgres", "sv_active"))
	names, _, rows = show(t, console, "SHOW DATABASES")
	require.Equal(t, "1", column(t, names, rows, "name", "postgres", "reserve_pool"))
	require.Equal(t, "5", column(t, names, rows, "name", "postgres", "max_connections"))
	require.Equal(t, "2", column(t, names, rows, "name", "postgres", "current_connections"))

	// Pool and reserve are both in use: a third client waits for a server to free up.
	go func() {
		_, err := c3.Exec(ctx, "select 1")
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a third server was lent past pool and reserve: %v", err)
	case <-time.After(2 * wait):
	}
	_, err = b.Exec(ctx, "commit")
	require.NoError(t, err)
	require.NoError(t, <-got)
	require.Equal(t, 2, poolServers(p, "postgres"))
	_, err = a.Exec(ctx, "commit")
	require.NoError(t, err)
}

// TestServerCheckQuery: a server idle longer than server_check_delay is checked before it
// is lent. One killed while idle (pg_terminate_backend), and one whose backend is stopped
// (SIGSTOP: its socket looks fine, but it never answers), are closed, and the client gets
// another server without seeing an error.
func TestServerCheckQuery(t *testing.T) {
	c := sharedCluster(t)
	integration.LocalBackendOnly(t, c, "stops a server process with SIGSTOP")
	p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1, ServerCheckQuery: "select 1",
		ServerCheckDelay: 300 * time.Millisecond, ServerConnectTimeout: 2 * time.Second})
	ctx := ctxT(t, time.Minute)
	admin := direct(t, c)
	client := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)

	pid := backendPID(t, client)
	_, err := admin.Exec(ctx, "select pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	time.Sleep(600 * time.Millisecond)
	next := backendPID(t, client)
	require.NotEqual(t, pid, next, "a new server after the killed one")

	require.NoError(t, syscall.Kill(next, syscall.SIGSTOP))
	t.Cleanup(func() {
		_ = syscall.Kill(next, syscall.SIGCONT)
		_, _ = admin.Exec(context.Background(), "select pg_terminate_backend($1)", next)
	})
	time.Sleep(600 * time.Millisecond)
	third := backendPID(t, client)
	require.NotEqual(t, next, third, "the stopped server was not lent")
	require.NotEqual(t, pid, third)
}

// TestServerRoundRobin: with three idle servers, one client's transactions go to each in
// turn with server_round_robin, and all to the most recently used one without it.
func TestServerRoundRobin(t *testing.T) {
	for _, rr := range []bool{false, true} {
		t.Run(fmt.Sprint("round_robin=", rr), func(t *testing.T) {
			_, p := proxy(t, pool.Config{DefaultPoolSize: 3, ServerRoundRobin: rr})
			ctx := ctxT(t, time.Minute)
			var conns []*pgx.Conn
			for range 3 {
				conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
				_, err := conn.Exec(ctx, "begin; select 1")
				require.NoError(t, err)
				conns = append(conns, conn)
			}
			for _, conn := range conns {
				_, err := conn.Exec(ctx, "commit")
				require.NoError(t, err)
			}
			require.Equal(t, 3, poolServers(p, "postgres"))
			seen := map[int]int{}
			for range 6 {
				seen[backendPID(t, conns[0])]++
			}
			if rr {
				require.Len(t, seen, 3, "each server in turn: %v", seen)
				for pid, n := range seen {
					require.Equal(t, 2, n, "server %d", pid)
				}
			} else {
				require.Len(t, seen, 1, "the most recently used server: %v", seen)
			}
		})
	}
}

// TestDatabaseAuthUser: a database's auth_user looks up the secrets of its clients with
// auth_query; a database without one (and no global auth_user) has no auth_query, so a
// user listed nowhere is refused there.
func TestDatabaseAuthUser(t *testing.T) {
	c, _ := secCluster(t)
	admin := connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	freshDatabase(t, admin, "noauthq")
	p := integration.StartProxy(t, c, pool.Config{
		AuthType:     pool.AuthSCRAM,
		AuthCacheTTL: -1,
		Databases: map[string]pool.Database{
			"postgres": {AuthUser: integration.Superuser},
		},
	})
	got, err := loginAs(t, "pgx", userURL(p.Addr, "frank", "frank-pw", "postgres", ""))
	require.NoError(t, err)
	require.Equal(t, "frank", got)
	_, err = loginAs(t, "pgx", userURL(p.Addr, "frank", "wrong", "postgres", ""))
	require.Equal(t, "28P01", sqlState(err), "%v", err)
	_, err = loginAs(t, "pgx", userURL(p.Addr, "frank", "frank-pw", "noauthq", ""))
	require.Equal(t, "28P01", sqlState(err), "no auth_query for a database without auth_user: %v", err)
}

// TestTrackExtraParameters: a parameter a client sets follows it to every server it uses
// (two servers, lent in turn), and no other client of the pool ever sees it, with one
// server or two.
func TestTrackExtraParameters(t *testing.T) {
	for _, size := range []int{1, 2} {
		t.Run(fmt.Sprint("pool_size=", size), func(t *testing.T) {
			_, p := proxy(t, pool.Config{DefaultPoolSize: size, ServerRoundRobin: true,
				TrackExtraParameters: []string{"work_mem", "Statement_Timeout"}})
			ctx := ctxT(t, time.Minute)
			a := connect(t, p.URL("", "")+"&statement_timeout=4321", pgx.QueryExecModeSimpleProtocol)
			b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
			if size == 2 {
				// Open the second server: two transactions at once.
				for _, sql := range []string{"begin; select 1", "commit"} {
					for _, conn := range []*pgx.Conn{a, b} {
						_, err := conn.Exec(ctx, sql)
						require.NoError(t, err)
					}
				}
			}
			_, err := a.Exec(ctx, "set work_mem = '7MB'")
			require.NoError(t, err)
			pids := map[int]bool{}
			for range 6 {
				for _, conn := range []*pgx.Conn{a, b} {
					var wm, st string
					var pid int
					require.NoError(t, conn.QueryRow(ctx, "select current_setting('work_mem'), current_setting('statement_timeout'), pg_backend_pid()").Scan(&wm, &st, &pid))
					pids[pid] = true
					if conn == a {
						require.Equal(t, "7MB", wm, "client A's work_mem on server %d", pid)
						require.Equal(t, "4321ms", st, "client A's statement_timeout on server %d", pid)
					} else {
						require.NotEqual(t, "7MB", wm, "client B sees A's work_mem on server %d", pid)
						require.NotEqual(t, "4321ms", st, "client B sees A's statement_timeout on server %d", pid)
					}
				}
			}
			require.Len(t, pids, size)
		})
	}
}

// TestTransactionTimeout: a client whose transaction has been open longer than
// transaction_timeout, idle in it or running a query, is closed with FATAL 25P04, and
// what it did is rolled back; a client whose transactions are each short is left alone
// however long it stays.
func TestTransactionTimeout(t *testing.T) {
	c := sharedCluster(t)
	const timeout = time.Second
	p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 2, TransactionTimeout: timeout})
	ctx := ctxT(t, time.Minute)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "drop table if exists xact_to; create table xact_to(x int)")
	require.NoError(t, err)

	steady := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	idle := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err = idle.Exec(ctx, "begin; insert into xact_to values (1)")
	require.NoError(t, err)
	for range 12 { // 2.4 s of short transactions
		_, err := steady.Exec(ctx, "select 1")
		require.NoError(t, err)
		time.Sleep(200 * time.Millisecond)
	}
	_, err = idle.Exec(ctx, "insert into xact_to values (2)")
	require.Equal(t, "25P04", sqlState(err), "%v", err)

	busy := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	start := time.Now()
	_, err = busy.Exec(ctx, "begin; insert into xact_to values (3); select pg_sleep(30)")
	require.Equal(t, "25P04", sqlState(err), "%v", err)
	require.Less(t, time.Since(start), 20*time.Second, "the query was not left to run")

	_, err = steady.Exec(ctx, "select 1")
	require.NoError(t, err)
	var n int
	require.NoError(t, admin.QueryRow(ctx, "select count(*) from xact_to").Scan(&n))
	require.Zero(t, n, "the timed-out transactions were rolled back")
	require.Eventually(t, func() bool {
		var n int
		return admin.QueryRow(ctx, "select count(*) from pg_stat_activity where state like 'idle in transaction%' or query like '%pg_sleep(30)%' and pid <> pg_backend_pid()").Scan(&n) == nil && n == 0
	}, 10*time.Second, 50*time.Millisecond, "no server is left in the transaction")
}

// TestServerLoginRetry: after a failed server login (a database that does not exist yet),
// logins within server_login_retry get that error at once, even once the database exists;
// after it, the server is tried again.
func TestServerLoginRetry(t *testing.T) {
	c := sharedCluster(t)
	const retry = 3 * time.Second
	admin := direct(t, c)
	ctx := ctxT(t, time.Minute)
	_, err := admin.Exec(ctx, "drop database if exists login_retry")
	require.NoError(t, err)
	p := integration.StartProxy(t, c, pool.Config{ServerLoginRetry: retry,
		Databases: map[string]pool.Database{"lr": {DBName: "login_retry"}}})
	login := func() error {
		conn, err := pgx.Connect(ctx, p.URL("lr", ""))
		if err == nil {
			_ = conn.Close(ctx)
		}
		return err
	}
	require.Equal(t, "3D000", sqlState(login()))
	failed := time.Now()
	_, err = admin.Exec(ctx, "create database login_retry")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop database if exists login_retry with (force)") })
	err = login()
	if time.Since(failed) < retry {
		require.Equal(t, "3D000", sqlState(err), "within server_login_retry the server is not tried again")
	}
	time.Sleep(time.Until(failed.Add(retry)))
	require.NoError(t, login(), "after server_login_retry the server is tried again")
}
