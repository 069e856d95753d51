package integration_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// Session pinning in transaction mode: a client that leaves session state on its server
// (a session advisory lock, a temporary table, a WITH HOLD cursor) keeps that server until
// the state is gone, then goes back to transaction pooling (docs/pooling.md).

// pinnedOf returns SHOW CLIENTS' pinned column for the client with application_name app.
func pinnedOf(t *testing.T, console *pgx.Conn, app string) string {
	t.Helper()
	names, _, rows := show(t, console, "SHOW CLIENTS")
	return column(t, names, rows, "application_name", app, "pinned")
}

// pinnedCount is the number of pinned clients Stat gives for database postgres, user
// postgres.
func pinnedCount(p *integration.Proxy) int {
	for _, g := range p.Server.Stat().ClientGroups {
		if g.Database == "postgres" && g.User == "postgres" {
			return g.Pinned
		}
	}
	return 0
}

// pinRefused is the count of statements refused by max_pinned for postgres/postgres.
func pinRefused(p *integration.Proxy) int64 {
	for _, g := range p.Server.Stat().ClientGroups {
		if g.Database == "postgres" && g.User == "postgres" {
			return g.PinRefused
		}
	}
	return 0
}

// connectApp connects through the proxy with an application_name, in mode.
func connectApp(t *testing.T, p *integration.Proxy, app string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	return connect(t, p.URL("", "")+"&application_name="+app, mode)
}

// advisoryHeld reports whether some backend holds session advisory lock key (granted).
func advisoryHeld(t *testing.T, ctx context.Context, d *pgx.Conn, key int) bool {
	t.Helper()
	var n int
	require.NoError(t, d.QueryRow(ctx, "select count(*) from pg_locks where locktype = 'advisory' and objid = $1 and granted", key).Scan(&n))
	return n > 0
}

// TestPinMigration is the migration tool's pattern: a session advisory lock held across
// several DDL transactions, while other clients go on with short transactions on the same
// pool. A second migrator waits for the lock.
func TestPinMigration(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 5})
	ctx := ctxT(t, 120*time.Second)
	d := direct(t, c)
	console := adminConn(t, p, "pgbouncer", "postgres")
	_, err := d.Exec(ctx, "drop table if exists pin_mig")
	require.NoError(t, err)

	m := connectApp(t, p, "migrator", pgx.QueryExecModeCacheStatement)
	// Extended protocol, as a driver sends it.
	var ok string
	require.NoError(t, m.QueryRow(ctx, "select pg_advisory_lock($1)::text", 4242).Scan(&ok))
	var pid uint32
	require.NoError(t, m.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))
	require.True(t, advisoryHeld(t, ctx, d, 4242))
	require.Equal(t, "advisory_lock", pinnedOf(t, console, "migrator"))
	require.Equal(t, 1, pinnedCount(p))

	// Meanwhile, 50 clients run short transactions on the same pool.
	others := make(chan error, 50)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, p.URL("", ""))
			if err != nil {
				others <- err
				return
			}
			defer conn.Close(context.Background())
			for n := 0; ; n++ {
				select {
				case <-stop:
					if n == 0 {
						others <- errors.New("no transaction ran")
					}
					return
				default:
				}
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					var x int
					return tx.QueryRow(ctx, "select $1::int + 1", i).Scan(&x)
				})
				if err != nil {
					others <- fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
		}()
	}

	// A second migrator waits for the lock.
	m2 := connectApp(t, p, "migrator2", pgx.QueryExecModeSimpleProtocol)
	got2 := make(chan error, 1)
	go func() {
		_, err := m2.Exec(ctx, "select pg_advisory_lock(4242)")
		got2 <- err
	}()
	waiters := func() int {
		var n int
		require.NoError(t, d.QueryRow(ctx, "select count(*) from pg_locks where locktype = 'advisory' and objid = 4242 and not granted").Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return waiters() == 1 }, 30*time.Second, 20*time.Millisecond,
		"the second migrator waits in pg_advisory_lock")

	for _, ddl := range []string{
		"create table pin_mig(id int primary key)",
		"alter table pin_mig add column name text",
		"insert into pin_mig values (1, 'one'), (2, 'two')",
	} {
		tx, err := m.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, ddl)
		require.NoError(t, err, ddl)
		require.NoError(t, tx.Commit(ctx))
		require.True(t, advisoryHeld(t, ctx, d, 4242), "the lock is held through the migration")
		var now uint32
		require.NoError(t, m.QueryRow(ctx, "select pg_backend_pid()").Scan(&now))
		require.Equal(t, pid, now, "the migrator keeps its server")
		require.Equal(t, "advisory_lock", pinnedOf(t, console, "migrator"))
	}
	select {
	case err := <-got2:
		t.Fatalf("the second migrator got the lock while the first held it (%v)", err)
	default:
	}
	require.Equal(t, 1, waiters(), "the second migrator still waits")

	require.NoError(t, m.QueryRow(ctx, "select pg_advisory_unlock($1)::text", 4242).Scan(&ok))
	require.Equal(t, "true", ok)
	select {
	case err := <-got2:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the second migrator did not get the lock after the first released it")
	}
	require.Equal(t, "", pinnedOf(t, console, "migrator"), "unpinned once the lock is released")
	require.Equal(t, "advisory_lock", pinnedOf(t, console, "migrator2"))
	require.Equal(t, 1, pinnedCount(p))
	_, err = m2.Exec(ctx, "select pg_advisory_unlock(4242)")
	require.NoError(t, err)
	require.False(t, advisoryHeld(t, ctx, d, 4242))
	require.Equal(t, "", pinnedOf(t, console, "migrator2"))
	require.Zero(t, pinnedCount(p))

	close(stop)
	wg.Wait()
	close(others)
	for err := range others {
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, m.QueryRow(ctx, "select count(*) from pin_mig").Scan(&n))
	require.Equal(t, 2, n)
	_, err = d.Exec(ctx, "drop table pin_mig")
	require.NoError(t, err)
	assertNoDirtyServers(t, c)
}

// TestPinOneServer: with one server, a pinned client keeps it; another client waits (it is
// not refused), and gets the server once the state is released, with nothing of it left.
func TestPinOneServer(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 120*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")
	d := direct(t, c)
	_, err := d.Exec(ctx, "drop table if exists pin_t; create table pin_t(x int); insert into pin_t values (1), (2), (3)")
	require.NoError(t, err)

	// clean checks, on b, that the server holds nothing of a's.
	clean := func(b *pgx.Conn) {
		t.Helper()
		var locks, cursors int
		var temp bool
		require.NoError(t, b.QueryRow(ctx, `select
			(select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()),
			(select count(*) from pg_cursors where name <> ''),
			to_regclass('pg_temp.pin_t') is not null`).Scan(&locks, &cursors, &temp))
		require.Zero(t, locks, "no advisory lock of another client")
		require.Zero(t, cursors, "no cursor of another client")
		require.False(t, temp, "no temporary table of another client")
		var n int
		require.NoError(t, b.QueryRow(ctx, "select count(*) from pin_t").Scan(&n))
		require.Equal(t, 3, n, "pin_t is the permanent table")
	}
	// waiting runs q on b in the background; the channel gets its result.
	waiting := func(b *pgx.Conn, q string) <-chan error {
		ch := make(chan error, 1)
		go func() {
			var pid uint32
			ch <- b.QueryRow(ctx, q).Scan(&pid)
		}()
		return ch
	}
	requireBlocked := func(ch <-chan error) {
		t.Helper()
		select {
		case err := <-ch:
			t.Fatalf("B ran while A was pinned to the only server (%v)", err)
		case <-time.After(1500 * time.Millisecond):
		}
	}

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			a := connectApp(t, p, "pin_a", mode)
			b := connectApp(t, p, "pin_b", mode)
			var apid uint32
			require.NoError(t, a.QueryRow(ctx, "select pg_backend_pid()").Scan(&apid))
			var locked bool
			require.NoError(t, a.QueryRow(ctx, "select pg_advisory_lock(1) is null").Scan(&locked))
			_, err := a.Exec(ctx, "create temp table pin_t(x int)")
			require.NoError(t, err)
			_, err = a.Exec(ctx, "insert into pin_t values (42)")
			require.NoError(t, err)
			tx, err := a.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "declare pin_c cursor with hold for select x from pin_t")
			require.NoError(t, err)
			require.NoError(t, tx.Commit(ctx))
			require.Equal(t, "advisory_lock,with_hold_cursor,temp_table", pinnedOf(t, console, "pin_a"))
			require.Equal(t, 1, pinnedCount(p))

			bDone := waiting(b, "select pg_backend_pid()")
			requireBlocked(bDone)
			// A's state is intact, on its server, while B waits.
			var x int
			require.NoError(t, a.QueryRow(ctx, "select x from pin_t").Scan(&x))
			require.Equal(t, 42, x)
			_, err = a.Exec(ctx, "fetch 1 from pin_c")
			require.NoError(t, err)

			// Released one by one: A stays pinned until the last is gone.
			_, err = a.Exec(ctx, "select pg_advisory_unlock(1)")
			require.NoError(t, err)
			require.Equal(t, "with_hold_cursor,temp_table", pinnedOf(t, console, "pin_a"))
			_, err = a.Exec(ctx, "drop table pin_t")
			require.NoError(t, err)
			require.Equal(t, "with_hold_cursor", pinnedOf(t, console, "pin_a"))
			requireBlocked(bDone)
			_, err = a.Exec(ctx, "close pin_c")
			require.NoError(t, err)

			select {
			case err := <-bDone:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Fatal("B did not get the server after A released its session state")
			}
			require.Equal(t, "", pinnedOf(t, console, "pin_a"))
			require.Zero(t, pinnedCount(p))
			var bpid uint32
			require.NoError(t, b.QueryRow(ctx, "select pg_backend_pid()").Scan(&bpid))
			require.Equal(t, apid, bpid, "B runs on A's server")
			clean(b)
		})
	}

	t.Run("pinned client leaves", func(t *testing.T) {
		a := connectApp(t, p, "pin_a2", pgx.QueryExecModeSimpleProtocol)
		b := connectApp(t, p, "pin_b2", pgx.QueryExecModeSimpleProtocol)
		var apid uint32
		require.NoError(t, a.QueryRow(ctx, "select pg_backend_pid()").Scan(&apid))
		_, err := a.Exec(ctx, "select pg_advisory_lock(1); create temp table pin_t(x int)")
		require.NoError(t, err)
		_, err = a.Exec(ctx, "begin; declare pin_c cursor with hold for select 1; commit")
		require.NoError(t, err)
		require.Equal(t, "advisory_lock,with_hold_cursor,temp_table", pinnedOf(t, console, "pin_a2"))
		bDone := waiting(b, "select pg_backend_pid()")
		requireBlocked(bDone)
		require.NoError(t, a.Close(ctx))
		select {
		case err := <-bDone:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("B did not get the server after the pinned client left")
		}
		var bpid uint32
		require.NoError(t, b.QueryRow(ctx, "select pg_backend_pid()").Scan(&bpid))
		require.Equal(t, apid, bpid, "the server was reset and reused, not closed")
		clean(b)
		require.Zero(t, pinnedCount(p))
	})
	_, err = d.Exec(ctx, "drop table pin_t")
	require.NoError(t, err)
	assertNoDirtyServers(t, c)
}

// TestPinTryLockAndXactLock: a pg_try_advisory_lock that fails leaves nothing, and a
// transaction-level advisory lock ends with its transaction: neither pins.
func TestPinTryLockAndXactLock(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")
	d := direct(t, c)
	_, err := d.Exec(ctx, "select pg_advisory_lock(77)")
	require.NoError(t, err)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			a := connectApp(t, p, "try_a", mode)
			b := connectApp(t, p, "try_b", mode)
			var got bool
			require.NoError(t, a.QueryRow(ctx, "select pg_try_advisory_lock(77)").Scan(&got))
			require.False(t, got, "the direct connection holds it")
			require.Equal(t, "", pinnedOf(t, console, "try_a"))
			require.Zero(t, pinnedCount(p))
			// The only server is free for B at once.
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var n int
			require.NoError(t, b.QueryRow(bctx, "select 1").Scan(&n))
			cancel()

			require.NoError(t, a.QueryRow(ctx, "select pg_try_advisory_xact_lock(78)").Scan(&got))
			require.True(t, got)
			_, err := a.Exec(ctx, "select pg_advisory_xact_lock(79)")
			require.NoError(t, err)
			require.Equal(t, "", pinnedOf(t, console, "try_a"))
			require.Zero(t, pinnedCount(p))
			bctx, cancel = context.WithTimeout(ctx, 10*time.Second)
			require.NoError(t, b.QueryRow(bctx, "select 1").Scan(&n))
			cancel()
			require.False(t, advisoryHeld(t, ctx, d, 78))
			require.False(t, advisoryHeld(t, ctx, d, 79))
		})
	}
	_, err = d.Exec(ctx, "select pg_advisory_unlock_all()")
	require.NoError(t, err)
}

// TestPinMaxPinned: with max_pinned pinned clients, a statement that would pin another is
// refused with 53400 before it reaches the server, in both protocols, and inside a
// transaction block the transaction is aborted as after any error. The client stays
// usable, and takes its lock once a slot is free.
func TestPinMaxPinned(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 3, MaxPinned: 1})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")
	d := direct(t, c)

	a := connectApp(t, p, "max_a", pgx.QueryExecModeSimpleProtocol)
	_, err := a.Exec(ctx, "select pg_advisory_lock(1)")
	require.NoError(t, err)
	require.Equal(t, "advisory_lock", pinnedOf(t, console, "max_a"))

	requireRefused := func(t *testing.T, err error) {
		t.Helper()
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "want an error, got %v", err)
		require.Equal(t, "53400", pe.Code, "got %v", err)
		require.Contains(t, pe.Message, "max_pinned (1)")
		require.Contains(t, pe.Message, "postgres/postgres")
		require.Contains(t, pe.Hint, "max_pinned")
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			cc := connectApp(t, p, "max_c", mode)
			refused0 := pinRefused(p)
			var s string
			requireRefused(t, cc.QueryRow(ctx, "select pg_advisory_lock(2)::text").Scan(&s))
			requireRefused(t, cc.QueryRow(ctx, "select pg_advisory_lock($1)::text", 2).Scan(&s))
			_, err := cc.Exec(ctx, "create temp table max_t(x int)")
			requireRefused(t, err)
			_, err = cc.Exec(ctx, "declare max_c cursor with hold for select 1")
			requireRefused(t, err)
			require.False(t, advisoryHeld(t, ctx, d, 2), "the refused statement never reached the server")
			var n int
			require.NoError(t, d.QueryRow(ctx, "select count(*) from pg_class where relname = 'max_t'").Scan(&n))
			require.Zero(t, n)
			require.Equal(t, refused0+4, pinRefused(p))

			// In a transaction block: the transaction is aborted, as after an error.
			tx, err := cc.Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, tx.QueryRow(ctx, "select 1").Scan(&n))
			requireRefused(t, tx.QueryRow(ctx, "select pg_advisory_lock($1)::text", 2).Scan(&s))
			require.Equal(t, "25P02", pgCode(tx.QueryRow(ctx, "select 1").Scan(&n)), "the transaction is aborted")
			require.NoError(t, tx.Rollback(ctx))

			// A transaction block whose first statement is refused (BEGIN not yet sent).
			tx, err = cc.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "select pg_advisory_lock(2)")
			requireRefused(t, err)
			require.Equal(t, "25P02", pgCode(tx.QueryRow(ctx, "select 1").Scan(&n)), "the transaction is aborted")
			require.NoError(t, tx.Rollback(ctx))

			require.NoError(t, cc.QueryRow(ctx, "select 41 + 1").Scan(&n), "the client stays usable")
			require.Equal(t, 42, n)
			require.Equal(t, "", pinnedOf(t, console, "max_c"))
			require.NoError(t, cc.Close(ctx))
		})
	}

	// Once A releases its lock, C may take one.
	cc := connectApp(t, p, "max_c2", pgx.QueryExecModeCacheStatement)
	_, err = a.Exec(ctx, "select pg_advisory_unlock(1)")
	require.NoError(t, err)
	require.Zero(t, pinnedCount(p))
	var s string
	require.NoError(t, cc.QueryRow(ctx, "select pg_advisory_lock($1)::text", 2).Scan(&s))
	require.True(t, advisoryHeld(t, ctx, d, 2))
	require.Equal(t, "advisory_lock", pinnedOf(t, console, "max_c2"))
	require.Equal(t, 1, pinnedCount(p))
	// Now A is the one refused.
	_, err = a.Exec(ctx, "select pg_advisory_lock(1)")
	requireRefused(t, err)
	require.NoError(t, cc.Close(ctx))
	require.Eventually(t, func() bool { return pinnedCount(p) == 0 }, 20*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool { return !advisoryHeld(t, ctx, d, 2) }, 20*time.Second, 50*time.Millisecond,
		"the pinned client's lock goes with it")
	assertNoDirtyServers(t, c)
}

// TestPinHiddenTempTable: a temporary table created where the grammar cannot see it (a DO
// block) pins the client as well: the server, not the statement, decides.
func TestPinHiddenTempTable(t *testing.T) {
	_, p := adminProxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")
	a := connectApp(t, p, "hidden_a", pgx.QueryExecModeSimpleProtocol)
	_, err := a.Exec(ctx, "do $$ begin create temp table pin_do(x int); insert into pin_do values (7); end $$")
	require.NoError(t, err)
	require.Equal(t, "temp_table", pinnedOf(t, console, "hidden_a"))
	var x int
	require.NoError(t, a.QueryRow(ctx, "select x from pin_do").Scan(&x))
	require.Equal(t, 7, x)
	_, err = a.Exec(ctx, "discard temp")
	require.NoError(t, err)
	require.Equal(t, "", pinnedOf(t, console, "hidden_a"))
	require.Zero(t, pinnedCount(p))
}

// TestPinSessionStateOffForDatabase: pin_session_state = false for one database restores the
// refusal of temporary tables and the warning for advisory locks there; another database
// keeps pinning.
func TestPinSessionStateOffForDatabase(t *testing.T) {
	off := false
	_, p := adminProxy(t, pool.Config{DefaultPoolSize: 2,
		Databases: map[string]pool.Database{"nopin": {DBName: "postgres", PinSessionState: &off}}})
	ctx := ctxT(t, 60*time.Second)

	a, warnings := connectNotices(t, p.URL("nopin", ""))
	_, err := a.Exec(ctx, "create temp table nopin_t(x int)")
	require.Equal(t, "0A000", pgCode(err), "got %v", err)
	_, err = a.Exec(ctx, "select pg_advisory_lock(5)")
	require.NoError(t, err)
	require.NotEmpty(t, warnings(), "a warning that the lock does not outlive the transaction")
	d := direct(t, sharedCluster(t))
	require.Eventually(t, func() bool { return !advisoryHeld(t, ctx, d, 5) }, 20*time.Second, 50*time.Millisecond,
		"the server was reset after the transaction")

	// LISTEN and SQL PREPARE / EXECUTE are off with it, as before they worked in
	// transaction mode.
	for _, q := range []string{"listen nopin_ch", "prepare nopin_s as select 1", "execute nopin_s"} {
		_, err = a.Exec(ctx, q)
		require.Equal(t, "0A000", pgCode(err), "%s: got %v", q, err)
	}

	b, bWarnings := connectNotices(t, p.URL("", ""))
	_, err = b.Exec(ctx, "create temp table nopin_t(x int)")
	require.NoError(t, err, "pinning is on for the other database")
	for _, q := range []string{"listen nopin_ch", "prepare nopin_s as select 1", "execute nopin_s", "unlisten *", "deallocate nopin_s"} {
		_, err = b.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	_, err = b.Exec(ctx, "select pg_advisory_lock(5)")
	require.NoError(t, err)
	require.Empty(t, bWarnings())
	require.True(t, advisoryHeld(t, ctx, d, 5))
	require.NoError(t, b.Close(ctx))
	require.Eventually(t, func() bool { return !advisoryHeld(t, ctx, d, 5) }, 20*time.Second, 50*time.Millisecond)
}

// TestPinMetrics: the binary's /metrics shows the pinned clients and the statements
// refused by max_pinned, set in the TOML file.
func TestPinMetrics(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 60*time.Second)
	cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
	writeConfig(t, cfgPath, c, "default_pool_size = 3\nmax_pinned = 1\n")
	bin := startBinary(t, cfgPath, freeAddr(t), freeAddr(t))
	metricsURL := "http://" + bin.metrics + "/metrics"

	a := connect(t, bin.url("postgres", "postgres"), pgx.QueryExecModeSimpleProtocol)
	_, err := a.Exec(ctx, "select pg_advisory_lock(31)")
	require.NoError(t, err)
	b := connect(t, bin.url("postgres", "postgres"), pgx.QueryExecModeSimpleProtocol)
	_, err = b.Exec(ctx, "select pg_advisory_lock(32)")
	require.Equal(t, "53400", pgCode(err), "got %v", err)

	_, body := httpGet(t, metricsURL)
	require.Equal(t, 1.0, metricValue(t, body, "cmpool_pinned_clients", `database="postgres"`))
	require.Equal(t, 1.0, metricValue(t, body, "cmpool_pin_refused_total", `database="postgres"`))

	_, err = a.Exec(ctx, "select pg_advisory_unlock(31)")
	require.NoError(t, err)
	_, body = httpGet(t, metricsURL)
	require.Equal(t, 0.0, metricValue(t, body, "cmpool_pinned_clients", `database="postgres"`))
}

// TestPinDiscardAll: a pinned client's DISCARD ALL runs on its server, as on a direct
// connection: it releases the lock, the cursor and the temporary table, and the client is
// unpinned; its server is clean for the next client.
func TestPinDiscardAll(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")
	d := direct(t, c)
	a := connectApp(t, p, "discard_a", pgx.QueryExecModeCacheStatement)
	var n int
	require.NoError(t, a.QueryRow(ctx, "select $1::int", 1).Scan(&n)) // a prepared statement
	_, err := a.Exec(ctx, "set work_mem = '3MB'")
	require.NoError(t, err)
	_, err = a.Exec(ctx, "select pg_advisory_lock(61); create temp table pin_dt(x int)")
	require.NoError(t, err)
	require.Equal(t, "advisory_lock,temp_table", pinnedOf(t, console, "discard_a"))
	_, err = a.Exec(ctx, "discard all")
	require.NoError(t, err)
	require.Equal(t, "", pinnedOf(t, console, "discard_a"))
	require.Zero(t, pinnedCount(p))
	require.False(t, advisoryHeld(t, ctx, d, 61))
	var wm string
	require.NoError(t, a.QueryRow(ctx, "show work_mem").Scan(&wm))
	require.Equal(t, "4MB", wm, "DISCARD ALL reset the setting")
	// As on a direct connection, the statements prepared before are gone.
	require.Equal(t, "26000", pgCode(a.QueryRow(ctx, "select $1::int", 2).Scan(&n)))
	require.NoError(t, a.QueryRow(ctx, "select $1::int * 2", 2).Scan(&n), "new statements work after DISCARD ALL")
	require.Equal(t, 4, n)

	b := connectApp(t, p, "discard_b", pgx.QueryExecModeCacheStatement)
	var temp bool
	require.NoError(t, b.QueryRow(ctx, "select to_regclass('pg_temp.pin_dt') is not null").Scan(&temp))
	require.False(t, temp)
	require.NoError(t, b.QueryRow(ctx, "select $1::int", 3).Scan(&n))
	require.Equal(t, 3, n)
}

// TestPinStatementMode: pinning works in statement mode too: the pinned client keeps its
// server across statements, and gives it back once its state is gone.
func TestPinStatementMode(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 2, PoolMode: pool.ModeStatement})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")
	d := direct(t, c)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			a := connectApp(t, p, "stmt_a", mode)
			var s string
			require.NoError(t, a.QueryRow(ctx, "select pg_advisory_lock($1::int)::text", 71).Scan(&s))
			_, err := a.Exec(ctx, "create temp table pin_st(x int)")
			require.NoError(t, err)
			require.Equal(t, "advisory_lock,temp_table", pinnedOf(t, console, "stmt_a"))
			var pid1, pid2 uint32
			require.NoError(t, a.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid1))
			_, err = a.Exec(ctx, "insert into pin_st values (1)")
			require.NoError(t, err)
			require.NoError(t, a.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid2))
			require.Equal(t, pid1, pid2)
			require.True(t, advisoryHeld(t, ctx, d, 71))
			// Another client is served by the other server meanwhile.
			b := connect(t, p.URL("", ""), mode)
			var n int
			require.NoError(t, b.QueryRow(ctx, "select 1").Scan(&n))
			require.NoError(t, a.QueryRow(ctx, "select pg_advisory_unlock($1::int)::text", 71).Scan(&s))
			_, err = a.Exec(ctx, "drop table pin_st")
			require.NoError(t, err)
			require.Equal(t, "", pinnedOf(t, console, "stmt_a"))
			require.Zero(t, pinnedCount(p))
			require.NoError(t, a.Close(ctx))
		})
	}
}

// TestPinReservationAfterFailedWait: a statement that would pin reserves a max_pinned slot
// before it waits for a server; when the wait fails (query_wait_timeout), the statement
// never ran, and the slot is free again for the other clients at once, not when the client
// leaves.
func TestPinReservationAfterFailedWait(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 1, MaxPinned: 1, QueryWaitTimeout: 300 * time.Millisecond})
	ctx := ctxT(t, 60*time.Second)
	d := direct(t, c)

	holder := connectApp(t, p, "wait_holder", pgx.QueryExecModeSimpleProtocol)
	a := connectApp(t, p, "wait_a", pgx.QueryExecModeSimpleProtocol)
	b := connectApp(t, p, "wait_b", pgx.QueryExecModeSimpleProtocol)
	tx, err := holder.Begin(ctx)
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRow(ctx, "select 1").Scan(&n), "the only server is held")

	_, err = a.Exec(ctx, "select pg_advisory_lock(7)")
	require.Equal(t, "57014", pgCode(err), "query_wait_timeout: got %v", err)
	require.False(t, advisoryHeld(t, ctx, d, 7))
	require.NoError(t, tx.Rollback(ctx))

	_, err = b.Exec(ctx, "select pg_advisory_lock(8)")
	require.NoError(t, err, "A's failed statement left no max_pinned slot taken")
	require.True(t, advisoryHeld(t, ctx, d, 8))
	require.Equal(t, 1, pinnedCount(p))
	_, err = b.Exec(ctx, "select pg_advisory_unlock(8)")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return pinnedCount(p) == 0 }, 20*time.Second, 50*time.Millisecond)

	// A is still usable, and may pin now.
	_, err = a.Exec(ctx, "select pg_advisory_lock(7)")
	require.NoError(t, err)
	_, err = a.Exec(ctx, "select pg_advisory_unlock(7)")
	require.NoError(t, err)
	assertNoDirtyServers(t, c)
}
