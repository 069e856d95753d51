package integration_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// The console commands of PgBouncer 1.25 beyond the basic ones, end to end: KILL_CLIENT,
// SET, SHOW MEM / SOCKETS / ACTIVE_SOCKETS, SHUTDOWN WAIT_FOR_CLIENTS.

// clientID returns the id SHOW CLIENTS gives the client with application_name app.
func clientID(t *testing.T, console *pgx.Conn, app string) string {
	t.Helper()
	names, _, rows := show(t, console, "SHOW CLIENTS")
	id := column(t, names, rows, "application_name", app, "id")
	require.NotEmpty(t, id, "client %s in SHOW CLIENTS", app)
	return id
}

// consoleErr runs cmd on the console and returns the SQLSTATE it fails with.
func consoleErr(t *testing.T, console *pgx.Conn, cmd string) string {
	t.Helper()
	_, err := console.Exec(ctxT(t, 10*time.Second), cmd)
	require.Error(t, err, cmd)
	return pgCode(err)
}

func TestConsoleKillClient(t *testing.T) {
	// One server: the killed client's must come back (or be replaced) for anyone to go on.
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: 10 * time.Second})
	ctx := ctxT(t, 60*time.Second)
	victim := connect(t, p.URL("postgres", "")+"&application_name=victim", pgx.QueryExecModeExec)
	bystander := connect(t, p.URL("postgres", "")+"&application_name=bystander", pgx.QueryExecModeExec)
	var one int
	require.NoError(t, bystander.QueryRow(ctx, "select 1").Scan(&one))

	// Session state the victim leaves behind must never reach the other client.
	_, err := victim.Exec(ctx, "set statement_timeout = '4242ms'")
	require.NoError(t, err)
	_, err = victim.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = victim.Exec(ctx, "set local work_mem = '4242kB'")
	require.NoError(t, err)
	var pid int
	require.NoError(t, victim.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))

	console := adminConn(t, p, "pgbouncer", "postgres")
	id := clientID(t, console, "victim")
	require.Equal(t, "55000", consoleErr(t, console, "KILL_CLIENT 999999"), "no such client")
	require.Equal(t, "22023", consoleErr(t, console, "KILL_CLIENT victim"))
	_, err = console.Exec(ctx, "KILL_CLIENT "+id)
	require.NoError(t, err)

	// The killed client hears why.
	_, err = victim.Exec(ctx, "select 1")
	require.Error(t, err)
	require.Equal(t, "57P01", pgCode(err), "killed client's error: %v", err)

	// Its transaction is over on the server: the backend is gone or idle, never left
	// idle in transaction.
	db := direct(t, c)
	require.Eventually(t, func() bool {
		var state string
		err := db.QueryRow(ctx, "select coalesce(state, '') from pg_stat_activity where pid = $1", pid).Scan(&state)
		return errors.Is(err, pgx.ErrNoRows) || err == nil && state == "idle"
	}, 20*time.Second, 50*time.Millisecond)

	// The other client is untouched, and gets the only server, without the victim's
	// settings.
	require.NoError(t, bystander.QueryRow(ctx, "select 2").Scan(&one))
	require.Equal(t, 2, one)
	var timeout, workMem string
	require.NoError(t, bystander.QueryRow(ctx, "select current_setting('statement_timeout'), current_setting('work_mem')").Scan(&timeout, &workMem))
	require.NotEqual(t, "4242ms", timeout)
	require.NotEqual(t, "4242kB", workMem)
	require.Eventually(t, func() bool {
		_, _, rows := show(t, console, "SHOW CLIENTS")
		for _, r := range rows {
			if slices.Contains(r, "victim") {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "the killed client is gone from SHOW CLIENTS")
	// An idle client is killed by its ptr as well.
	names, _, rows := show(t, console, "SHOW CLIENTS")
	ptr := column(t, names, rows, "application_name", "bystander", "ptr")
	_, err = console.Exec(ctx, "KILL_CLIENT "+ptr)
	require.NoError(t, err)
	_, err = bystander.Exec(ctx, "select 1")
	require.Equal(t, "57P01", pgCode(err), "error: %v", err)
	// The console goes on.
	_, _, _ = show(t, console, "SHOW POOLS")
}

func TestConsoleSet(t *testing.T) {
	_, p := adminProxy(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: time.Second})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "cmpool", "postgres")

	// query_timeout: off, then 1 s.
	c1 := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	_, err := c1.Exec(ctx, "select pg_sleep(1.5)")
	require.NoError(t, err)
	_, err = console.Exec(ctx, "SET query_timeout = 0.5")
	require.NoError(t, err)
	names, _, rows := show(t, console, "SHOW CONFIG")
	require.Equal(t, "0.5", column(t, names, rows, "key", "query_timeout", "value"))
	_, err = c1.Exec(ctx, "select pg_sleep(3)")
	require.Equal(t, "57014", pgCode(err), "query_timeout after SET: %v", err)
	_, err = console.Exec(ctx, "SET query_timeout TO '0'")
	require.NoError(t, err)
	_, err = c1.Exec(ctx, "select pg_sleep(1)")
	require.NoError(t, err)

	// default_pool_size: with one server held in a transaction, a second client waits
	// and times out; after SET default_pool_size = 2 it gets a server of its own.
	holder := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	_, err = holder.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = holder.Exec(ctx, "select 1")
	require.NoError(t, err)
	_, err = c1.Exec(ctx, "select 1")
	require.Equal(t, "57014", pgCode(err), "pool of one, held: %v", err)
	_, err = console.Exec(ctx, "SET default_pool_size = 2")
	require.NoError(t, err)
	_, err = c1.Exec(ctx, "select 1")
	require.NoError(t, err, "after SET default_pool_size = 2")
	_, err = holder.Exec(ctx, "commit")
	require.NoError(t, err)
	names, _, rows = show(t, console, "SHOW DATABASES")
	require.Equal(t, "2", column(t, names, rows, "name", "postgres", "pool_size"))

	// Refusals, each with its SQLSTATE; nothing changes.
	for cmd, code := range map[string]string{
		"SET listen_addr = '0.0.0.0'":   "55000", // needs a restart
		"SET logfile = '/tmp/x'":        "0A000", // PgBouncer's, not cmpool's
		"SET no_such_setting = 1":       "42704",
		"SET default_pool_size = -1":    "22023",
		"SET query_timeout = soon":      "22023",
		"SET pool_mode = 'sometimes'":   "22023",
		"SET default_pool_size 3":       "42601",
		"SET server_reset_query = 'abc": "42601",
	} {
		require.Equal(t, code, consoleErr(t, console, cmd), cmd)
	}
	names, _, rows = show(t, console, "SHOW CONFIG")
	require.Equal(t, "2", column(t, names, rows, "key", "default_pool_size", "value"))
	// A session parameter a driver sets is ignored, as PgBouncer does.
	_, err = console.Exec(ctx, "SET client_encoding = 'UTF8'")
	require.NoError(t, err)

	// SET is for admin_users.
	watcher := adminConn(t, p, "cmpool", "watcher")
	require.Equal(t, "42501", consoleErr(t, watcher, "SET default_pool_size = 5"))
}

func TestConsoleShowMemAndSockets(t *testing.T) {
	_, p := adminProxy(t, pool.Config{})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")

	names, oids, rows := show(t, console, "SHOW MEM")
	require.Equal(t, []string{"name", "size", "used", "free", "memtotal"}, names)
	require.Equal(t, []uint32{25, 20, 20, 20, 20}, oids)
	var kinds []string
	for _, r := range rows {
		kinds = append(kinds, r[0])
		used, _ := strconv.ParseInt(r[2], 10, 64)
		free, _ := strconv.ParseInt(r[3], 10, 64)
		total, _ := strconv.ParseInt(r[4], 10, 64)
		require.Equal(t, total, used+free, "row %v", r)
	}
	require.Equal(t, []string{"heap", "stack", "mspan", "mcache", "gc", "other", "total"}, kinds)
	require.NotEqual(t, "0", column(t, names, rows, "name", "heap", "used"))

	busy := connect(t, p.URL("", "")+"&application_name=busy", pgx.QueryExecModeExec)
	idle := connect(t, p.URL("", "")+"&application_name=idle", pgx.QueryExecModeExec)
	_, err := idle.Exec(ctx, "select 1")
	require.NoError(t, err)
	_, err = busy.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = busy.Exec(ctx, "select 1")
	require.NoError(t, err)
	busyID := clientID(t, console, "busy")
	idleID := clientID(t, console, "idle")

	wantCols := []string{"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
		"application_name", "prepared_statements", "id",
		"recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail", "send_avail"}
	names, _, rows = show(t, console, "SHOW SOCKETS")
	require.Equal(t, wantCols, names)
	require.Equal(t, "cl_active", column(t, names, rows, "id", busyID, "state"))
	require.Equal(t, "cl_active", column(t, names, rows, "id", idleID, "state"))
	serverPtr := column(t, names, rows, "id", busyID, "link")
	require.NotEmpty(t, serverPtr, "the busy client is linked to a server")
	require.Equal(t, "sv_active", column(t, names, rows, "ptr", serverPtr, "state"))
	require.Equal(t, "busy", column(t, names, rows, "ptr", serverPtr, "application_name"))
	require.Equal(t, "S", column(t, names, rows, "ptr", serverPtr, "type"))

	names, _, rows = show(t, console, "SHOW ACTIVE_SOCKETS")
	require.Equal(t, wantCols, names)
	var ids, ptrs []string
	for _, r := range rows {
		ids = append(ids, r[indexOf(names, "id")])
		ptrs = append(ptrs, r[indexOf(names, "ptr")])
	}
	require.Contains(t, ids, busyID)
	require.NotContains(t, ids, idleID, "an idle client has nothing in flight")
	require.Contains(t, ptrs, serverPtr)
	_, err = busy.Exec(ctx, "commit")
	require.NoError(t, err)

	// psql, as operators use it.
	psql := psqlPath(t)
	out, err := exec.CommandContext(ctx, psql, "-X", "-A", "-c", "SHOW MEM", p.URL("pgbouncer", "postgres")).CombinedOutput()
	require.NoError(t, err, string(out))
	require.True(t, strings.HasPrefix(string(out), "name|size|used|free|memtotal\n"), string(out))
	out, err = exec.CommandContext(ctx, psql, "-X", "-c", "SHOW FDS", p.URL("pgbouncer", "postgres")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "so_reuseport", string(out))
}

func TestConsoleShutdownWaitForClients(t *testing.T) {
	c := sharedCluster(t)
	cfg := integration.WithTestAuth(pool.Config{Primary: c.Primary.URL("", ""), AdminUsers: []string{"postgres"}})
	srv, err := pool.New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	p := &integration.Proxy{Server: srv, Addr: ln.Addr().String()}
	ctx := ctxT(t, 60*time.Second)

	client := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	_, err = client.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = client.Exec(ctx, "select 1")
	require.NoError(t, err)

	console := adminConn(t, p, "cmpool", "postgres")
	_, err = console.Exec(ctx, "SHUTDOWN WAIT_FOR_CLIENTS")
	require.NoError(t, err)

	// No new client is accepted.
	require.Eventually(t, func() bool {
		conn, err := pgx.Connect(ctx, p.URL("", ""))
		if err == nil {
			_ = conn.Close(ctx)
		}
		return err != nil
	}, 10*time.Second, 20*time.Millisecond)
	require.ErrorIs(t, srv.Ready(ctx), pool.ErrServerClosed)
	names, _, rows := show(t, console, "SHOW STATE")
	require.Equal(t, "yes", column(t, names, rows, "key", "shutting_down", "value"))

	// The client in a transaction finishes it, and goes on with more: it is not asked
	// to leave.
	_, err = client.Exec(ctx, "select 2")
	require.NoError(t, err)
	_, err = client.Exec(ctx, "commit")
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond) // longer than a drain's grace: a drain would close it now
	for i := 0; i < 3; i++ {
		_, err = client.Exec(ctx, "select 3")
		require.NoError(t, err)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned while a client is connected: %v", err)
	default:
	}

	// The last client leaves: the server shuts down, and closes the console too.
	require.NoError(t, client.Close(ctx))
	select {
	case err := <-served:
		require.ErrorIs(t, err, pool.ErrServerClosed)
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the last client left")
	}
	_, err = console.Exec(ctx, "SHOW STATE")
	require.Error(t, err, "the console is closed by the shutdown")
}

// TestBinaryShutdownWaitForClients: the binary, told SHUTDOWN WAIT_FOR_CLIENTS on its
// console, stops accepting at once and exits (code 0) only once its last client has left.
func TestBinaryShutdownWaitForClients(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 90*time.Second)
	cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
	writeConfig(t, cfgPath, c, "shutdown_timeout = \"20s\"\n")
	p := startBinary(t, cfgPath, freeAddr(t), freeAddr(t))

	client := connect(t, p.url("postgres", "postgres"), pgx.QueryExecModeExec)
	_, err := client.Exec(ctx, "begin")
	require.NoError(t, err)
	console := connect(t, p.url("pgbouncer", "postgres"), pgx.QueryExecModeSimpleProtocol)
	_, err = console.Exec(ctx, "SHUTDOWN WAIT_FOR_CLIENTS")
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		code, _ := httpGet(t, "http://"+p.metrics+"/readyz")
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 20*time.Millisecond, "/readyz still ready while waiting for clients")
	require.Eventually(t, func() bool {
		conn, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
		if err == nil {
			_ = conn.Close(ctx)
		}
		return err != nil
	}, 5*time.Second, 20*time.Millisecond, "a new client was accepted")

	_, err = client.Exec(ctx, "commit")
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond)
	var n int
	require.NoError(t, client.QueryRow(ctx, "select 4").Scan(&n), "a client is not asked to leave")
	select {
	case <-p.exited:
		t.Fatalf("cmpool exited with a client connected:\n%s", p.logs.String())
	default:
	}

	require.NoError(t, client.Close(ctx))
	select {
	case <-p.exited:
		require.NoError(t, p.err, "exit code 0")
	case <-time.After(30 * time.Second):
		t.Fatalf("cmpool did not exit after its last client left:\n%s", p.logs.String())
	}
	require.Contains(t, p.logs.String(), "the last client has left")
}

// TestConsoleKillWaitingClient: a client waiting for a server when it is killed is closed,
// and the request it was waiting to send never runs.
func TestConsoleKillWaitingClient(t *testing.T) {
	c, p := adminProxy(t, pool.Config{DefaultPoolSize: 1, QueryWaitTimeout: 30 * time.Second})
	ctx := ctxT(t, 60*time.Second)
	db := direct(t, c)
	_, err := db.Exec(ctx, "create table if not exists kill_waiting (v int)")
	require.NoError(t, err)
	_, err = db.Exec(ctx, "truncate kill_waiting")
	require.NoError(t, err)

	// Both log in first: a login takes a server too.
	holder := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	waiter := connect(t, p.URL("", "")+"&application_name=waiter", pgx.QueryExecModeSimpleProtocol)
	_, err = holder.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = holder.Exec(ctx, "select 1")
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() { _, err := waiter.Exec(ctx, "insert into kill_waiting values (1)"); done <- err }()
	console := adminConn(t, p, "cmpool", "postgres")
	require.Eventually(t, func() bool {
		names, _, rows := show(t, console, "SHOW CLIENTS")
		return column(t, names, rows, "application_name", "waiter", "state") == "waiting"
	}, 10*time.Second, 20*time.Millisecond)
	_, err = console.Exec(ctx, "KILL_CLIENT "+clientID(t, console, "waiter"))
	require.NoError(t, err)
	select {
	case err := <-done:
		require.Equal(t, "57P01", pgCode(err), "the killed client's request fails: %v", err)
	case <-time.After(10 * time.Second): // at once, but the machine may be loaded
		t.Fatal("the killed waiting client is still waiting")
	}
	_, err = holder.Exec(ctx, "commit")
	require.NoError(t, err)
	// The server is free again: the holder goes on, and the killed request never ran.
	var n int
	require.NoError(t, holder.QueryRow(ctx, "select count(*) from kill_waiting").Scan(&n))
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, db.QueryRow(ctx, "select count(*) from kill_waiting").Scan(&n))
	require.Zero(t, n, "the killed client's insert ran")

	// The same for a client waiting for RESUME.
	paused := connect(t, p.URL("", "")+"&application_name=paused", pgx.QueryExecModeSimpleProtocol)
	_, err = console.Exec(ctx, "PAUSE")
	require.NoError(t, err)
	go func() { _, err := paused.Exec(ctx, "insert into kill_waiting values (2)"); done <- err }()
	require.Eventually(t, func() bool {
		names, _, rows := show(t, console, "SHOW CLIENTS")
		return column(t, names, rows, "application_name", "paused", "state") == "waiting"
	}, 10*time.Second, 20*time.Millisecond)
	_, err = console.Exec(ctx, "KILL_CLIENT "+clientID(t, console, "paused"))
	require.NoError(t, err)
	select {
	case err := <-done:
		require.Equal(t, "57P01", pgCode(err), "the killed client's request fails: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the killed paused client is still waiting")
	}
	_, err = console.Exec(ctx, "RESUME")
	require.NoError(t, err)
	require.NoError(t, holder.QueryRow(ctx, "select count(*) from kill_waiting").Scan(&n))
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, db.QueryRow(ctx, "select count(*) from kill_waiting").Scan(&n))
	require.Zero(t, n, "the killed client's insert ran")
}
