package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// The admin console, end to end: column names and types, the pgbouncer_exporter's
// queries through lib/pq, access control, PAUSE/RESUME/KILL/RECONNECT and RELOAD.

func adminProxy(t *testing.T, cfg pool.Config) (*integration.Cluster, *integration.Proxy) {
	t.Helper()
	cfg.AdminUsers = append(cfg.AdminUsers, "postgres")
	cfg.StatsUsers = append(cfg.StatsUsers, "watcher")
	return proxy(t, cfg)
}

// adminConn opens the console as user (simple protocol: the console has no other).
func adminConn(t *testing.T, p *integration.Proxy, database, user string) *pgx.Conn {
	t.Helper()
	return connect(t, p.URL(database, user), pgx.QueryExecModeSimpleProtocol)
}

// show runs a console command and returns its column names, type OIDs and rows as text.
func show(t *testing.T, conn *pgx.Conn, cmd string) ([]string, []uint32, [][]string) {
	t.Helper()
	rows, err := conn.Query(ctxT(t, 10*time.Second), cmd)
	require.NoError(t, err, cmd)
	defer rows.Close()
	var names []string
	var oids []uint32
	for _, f := range rows.FieldDescriptions() {
		names = append(names, f.Name)
		oids = append(oids, f.DataTypeOID)
	}
	var out [][]string
	for rows.Next() {
		var row []string
		for _, v := range rows.RawValues() {
			row = append(row, string(v))
		}
		out = append(out, row)
	}
	require.NoError(t, rows.Err(), cmd)
	return names, oids, out
}

// column returns the value of col in the row where key column keyCol equals key.
func column(t *testing.T, names []string, rows [][]string, keyCol, key, col string) string {
	t.Helper()
	ki, ci := -1, -1
	for i, n := range names {
		if n == keyCol {
			ki = i
		}
		if n == col {
			ci = i
		}
	}
	require.True(t, ki >= 0 && ci >= 0, "columns %s, %s in %v", keyCol, col, names)
	for _, r := range rows {
		if r[ki] == key {
			return r[ci]
		}
	}
	t.Fatalf("no row with %s = %q in %v", keyCol, key, rows)
	return ""
}

func TestAdminShowColumns(t *testing.T) {
	c, p := adminProxy(t, pool.Config{})
	_ = c
	// Some traffic, so that the pool exists.
	app := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	var one int
	require.NoError(t, app.QueryRow(ctxT(t, 10*time.Second), "select 1").Scan(&one))

	const text, int4, int8, numeric = 25, 23, 20, 1700
	for _, db := range []string{"cmpool", "pgbouncer"} {
		conn := adminConn(t, p, db, "postgres")
		for _, tc := range []struct {
			cmd   string
			names []string
			types map[string]uint32
		}{
			{"SHOW POOLS", []string{"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
				"cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used",
				"sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode"},
				map[string]uint32{"database": text, "cl_active": int4, "maxwait_us": int4, "pool_mode": text}},
			{"SHOW STATS", []string{"database", "total_xact_count", "total_query_count", "total_server_assignment_count",
				"total_received", "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
				"total_client_parse_count", "total_server_parse_count", "total_bind_count",
				"avg_xact_count", "avg_query_count", "avg_server_assignment_count", "avg_recv", "avg_sent",
				"avg_xact_time", "avg_query_time", "avg_wait_time",
				"avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"},
				map[string]uint32{"database": text, "total_xact_count": numeric, "avg_wait_time": numeric}},
			{"SHOW STATS_TOTALS", []string{"database", "xact_count", "query_count", "server_assignment_count",
				"bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time",
				"client_parse_count", "server_parse_count", "bind_count"},
				map[string]uint32{"xact_count": numeric}},
			{"SHOW STATS_AVERAGES", []string{"database", "xact_count", "query_count", "server_assignment_count",
				"bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time",
				"client_parse_count", "server_parse_count", "bind_count"}, nil},
			{"SHOW CLIENTS", []string{"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
				"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
				"application_name", "prepared_statements", "id", "pinned"}, map[string]uint32{"port": int4, "connect_time": text, "id": int8, "pinned": text}},
			{"SHOW SERVERS", []string{"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
				"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
				"application_name", "prepared_statements", "id"}, nil},
			{"SHOW DATABASES", []string{"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
				"reserve_pool", "pool_mode", "max_connections", "current_connections", "paused", "disabled"},
				map[string]uint32{"pool_size": int4, "paused": int4}},
			{"SHOW LISTS", []string{"list", "items"}, map[string]uint32{"list": text, "items": int4}},
			{"SHOW CONFIG", []string{"key", "value", "default", "changeable"}, nil},
			{"SHOW VERSION", []string{"version"}, map[string]uint32{"version": text}},
			{"SHOW USERS", []string{"name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections",
				"current_connections", "max_user_client_connections", "current_client_connections"},
				map[string]uint32{"pool_size": text, "current_connections": int4}},
			{"SHOW TOTALS", []string{"name", "value"}, nil},
			{"SHOW REPLICAS", []string{"index", "host", "role", "state", "lag_bytes", "lag_ms", "replay_lsn", "routed",
				"outstanding", "banned_until", "last_error"}, nil},
			{"show pools;", nil, nil}, // case and a trailing semicolon, as psql users type it
		} {
			t.Run(db+" "+tc.cmd, func(t *testing.T) {
				names, oids, _ := show(t, conn, tc.cmd)
				if tc.names != nil {
					require.Equal(t, tc.names, names)
				}
				for col, want := range tc.types {
					i := indexOf(names, col)
					require.GreaterOrEqual(t, i, 0, col)
					require.Equal(t, want, oids[i], "type of %s", col)
				}
			})
		}
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// TestAdminExporterQueries runs the console queries pgbouncer_exporter runs, the way it
// runs them (database/sql over lib/pq, simple protocol, one connection), and checks that
// every value it turns into a metric parses as a number and that the counters move.
func TestAdminExporterQueries(t *testing.T) {
	c, p := adminProxy(t, pool.Config{})
	ctx := ctxT(t, 60*time.Second)
	db, err := sql.Open("postgres", p.URL("pgbouncer", "watcher"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)

	scrape := func() map[string]float64 {
		out := make(map[string]float64)
		rows, err := db.QueryContext(ctx, "SHOW STATS") // the exporter's ping
		require.NoError(t, err)
		require.NoError(t, rows.Close())

		var version string
		require.NoError(t, db.QueryRowContext(ctx, "SHOW VERSION;").Scan(&version))
		require.Contains(t, version, "cmpool")

		rows, err = db.QueryContext(ctx, "SHOW LISTS;")
		require.NoError(t, err)
		for rows.Next() {
			var list string
			var items sql.RawBytes
			require.NoError(t, rows.Scan(&list, &items))
			v, err := strconv.ParseFloat(string(items), 64)
			require.NoError(t, err, "lists %s", list)
			out["lists."+list] = v
		}
		require.NoError(t, rows.Err())

		rows, err = db.QueryContext(ctx, "SHOW CONFIG;")
		require.NoError(t, err)
		cols, err := rows.Columns()
		require.NoError(t, err)
		require.Len(t, cols, 4)
		for rows.Next() {
			var key, changeable string
			var value, def sql.RawBytes
			require.NoError(t, rows.Scan(&key, &value, &def, &changeable))
			if key == "max_client_conn" || key == "max_user_connections" {
				v, err := strconv.ParseFloat(string(value), 64)
				require.NoError(t, err, "config %s", key)
				out["config."+key] = v
			}
		}
		require.NoError(t, rows.Err())

		for ns, labels := range map[string][]string{
			"DATABASES":    {"name", "host", "port", "database", "force_user", "pool_mode"},
			"STATS_TOTALS": {"database"},
			"POOLS":        {"database", "user", "pool_mode"},
		} {
			rows, err := db.QueryContext(ctx, fmt.Sprintf("SHOW %s;", ns))
			require.NoError(t, err, ns)
			cols, err := rows.Columns()
			require.NoError(t, err)
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				require.NoError(t, rows.Scan(ptrs...))
				key := ""
				for i, col := range cols {
					if indexOf(labels, col) >= 0 {
						if col == "database" || col == "name" || col == "user" {
							s, ok := vals[i].(string)
							require.True(t, ok || vals[i] == nil, "%s.%s is a label and must be text, got %T", ns, col, vals[i])
							key += "/" + s
						}
						continue
					}
					var f float64
					switch v := vals[i].(type) {
					case int64:
						f = float64(v)
					case []byte:
						f, err = strconv.ParseFloat(string(v), 64)
						require.NoError(t, err, "%s.%s = %q", ns, col, v)
					default:
						t.Fatalf("%s.%s: unexpected %T", ns, col, v)
					}
					out[ns+key+"."+col] = f
				}
			}
			require.NoError(t, rows.Err(), ns)
		}
		return out
	}

	before := scrape()
	require.Equal(t, float64(pool.DefaultMaxClientConn), before["config.max_client_conn"])

	app := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	for i := range 10 {
		var n int
		require.NoError(t, app.QueryRow(ctx, "select $1::int", i).Scan(&n))
	}
	_, err = app.Exec(ctx, "begin; select 1; select 2; commit")
	require.NoError(t, err)
	_, err = app.Exec(ctx, "select 1/0")
	require.Error(t, err)
	_ = c

	after := scrape()
	for _, col := range []string{"xact_count", "query_count", "bytes_received", "bytes_sent", "query_time", "xact_time"} {
		key := "STATS_TOTALS/postgres." + col
		require.Greater(t, after[key], before[key], "%s moves with traffic", key)
	}
	require.GreaterOrEqual(t, after["STATS_TOTALS/postgres.query_count"]-before["STATS_TOTALS/postgres.query_count"], float64(12))
	require.Equal(t, float64(1), after["POOLS/postgres/postgres.cl_active"], "the one application client")
	require.GreaterOrEqual(t, after["lists.used_clients"], float64(2), "the application and the console")
	require.GreaterOrEqual(t, after["lists.pools"], float64(1))
}

func TestAdminAccessAndErrors(t *testing.T) {
	_, p := adminProxy(t, pool.Config{})
	ctx := ctxT(t, 30*time.Second)

	// A user in neither list cannot open the console.
	_, err := pgx.Connect(ctx, p.URL("cmpool", "intruder"))
	require.Equal(t, "28000", pgCode(err), "got %v", err)

	// A stats user may SHOW but not control.
	stats := adminConn(t, p, "cmpool", "watcher")
	show(t, stats, "SHOW POOLS")
	_, err = stats.Exec(ctx, "PAUSE")
	require.Equal(t, "42501", pgCode(err), "got %v", err)

	admin := adminConn(t, p, "cmpool", "postgres")
	for _, tc := range []struct{ sql, code string }{
		{"select 1", "42601"},
		{"SHOW NOTHING", "42601"},
		{"SHOW", "42601"},
		{"RESUME", "55000"}, // nothing is paused
		{"KILL", "42601"},
		{"PAUSE a b", "42601"},
	} {
		_, err := admin.Exec(ctx, tc.sql)
		require.Equal(t, tc.code, pgCode(err), "%s: got %v", tc.sql, err)
	}
	// The connection is still fine after errors.
	show(t, admin, "SHOW VERSION")

	// The extended protocol gets a clear error, and the session stays usable.
	ext := connect(t, p.URL("cmpool", "postgres"), pgx.QueryExecModeExec)
	res := ext.PgConn().ExecParams(ctx, "SHOW POOLS", nil, nil, nil, nil).Read()
	require.Equal(t, "0A000", pgCode(res.Err), "got %v", res.Err)
	_, err = ext.Exec(ctx, "SHOW POOLS", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)

	// psql, as operators use it.
	psql := psqlPath(t)
	out, err := exec.CommandContext(ctx, psql, "-X", "-A", "-c", "SHOW POOLS", p.URL("pgbouncer", "postgres")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "cl_active|cl_waiting")
	out, err = exec.CommandContext(ctx, psql, "-X", "-c", "SHOW HELP", p.URL("cmpool", "postgres")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "RECONNECT")
}

func psqlPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/lib/postgresql/15/bin/psql", "psql"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("psql not found")
	return ""
}

func TestAdminPauseResume(t *testing.T) {
	c, p := adminProxy(t, pool.Config{})
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "create table if not exists paused_t(id int)")
	require.NoError(t, err)
	console := adminConn(t, p, "cmpool", "postgres")
	watch := adminConn(t, p, "cmpool", "postgres")

	// This one logs in before the PAUSE.
	other := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	// No client has logged in to this database yet.
	freshDatabase(t, admin, "pauselogin")

	// A transaction in flight.
	inTx := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	tx, err := inTx.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "insert into paused_t values (1)")
	require.NoError(t, err)

	// PAUSE waits for it.
	paused := make(chan error, 1)
	go func() {
		_, err := console.Exec(context.Background(), "PAUSE")
		paused <- err
	}()
	select {
	case err := <-paused:
		t.Fatalf("PAUSE returned with a transaction in flight: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// The transaction may still finish.
	_, err = tx.Exec(ctx, "insert into paused_t values (2)")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	select {
	case err := <-paused:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("PAUSE did not return after the transaction ended")
	}

	// New transactions wait, counted as waiting.
	done := make(chan error, 1)
	go func() {
		var n int
		done <- other.QueryRow(context.Background(), "select count(*) from paused_t").Scan(&n)
	}()
	require.Eventually(t, func() bool {
		names, _, rows := show(t, watch, "SHOW POOLS")
		return column(t, names, rows, "database", "postgres", "cl_waiting") == "1"
	}, 10*time.Second, 50*time.Millisecond)
	names, _, rows := show(t, watch, "SHOW DATABASES")
	require.Equal(t, "1", column(t, names, rows, "name", "postgres", "paused"))
	select {
	case err := <-done:
		t.Fatalf("a query ran while paused: %v", err)
	default:
	}

	// A client logs in during the PAUSE without a server, from the parameters reported at
	// an earlier login of the same database and user, with its own over them. Its first
	// query waits for RESUME like the others.
	lateCfg, err := pgx.ParseConfig(p.URL("", ""))
	require.NoError(t, err)
	lateCfg.RuntimeParams["application_name"] = "late"
	lateCfg.ConnectTimeout = 5 * time.Second
	late, err := pgx.ConnectConfig(ctx, lateCfg)
	require.NoError(t, err, "a login during PAUSE")
	t.Cleanup(func() { _ = late.Close(context.Background()) })
	require.Equal(t, "late", late.PgConn().ParameterStatus("application_name"))
	require.Equal(t, other.PgConn().ParameterStatus("server_version"), late.PgConn().ParameterStatus("server_version"))
	lateDone := make(chan string, 1)
	go func() {
		var name string
		if err := late.QueryRow(context.Background(), "show application_name").Scan(&name); err != nil {
			name = err.Error()
		}
		lateDone <- name
	}()
	require.Eventually(t, func() bool {
		names, _, rows := show(t, watch, "SHOW POOLS")
		return column(t, names, rows, "database", "postgres", "cl_waiting") == "2"
	}, 10*time.Second, 50*time.Millisecond)
	// A database nobody has logged in to yet needs a server to log in: that login waits.
	loginCtx, cancelLogin := context.WithTimeout(ctx, time.Second)
	_, err = pgx.Connect(loginCtx, p.URL("pauselogin", ""))
	cancelLogin()
	require.Error(t, err, "a first login to a paused database waits for RESUME")

	_, err = console.Exec(ctx, "RESUME")
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the query did not run after RESUME")
	}
	select {
	case name := <-lateDone:
		require.Equal(t, "late", name, "the server got the client's parameters at its first query")
	case <-time.After(10 * time.Second):
		t.Fatal("the late client's query did not run after RESUME")
	}

	// PAUSE of one database holds only that database.
	freshDatabase(t, admin, "pausedb")
	_, err = console.Exec(ctx, "PAUSE pausedb")
	require.NoError(t, err)
	var one int
	require.NoError(t, other.QueryRow(ctx, "select 1").Scan(&one), "another database is not paused")
	_, err = console.Exec(ctx, "RESUME pausedb")
	require.NoError(t, err)
}

// TestAdminDisableEnable: DISABLE refuses new logins to a database (55000) and keeps its
// connected clients; ENABLE lets logins in again. SHOW DATABASES shows the flag.
func TestAdminDisableEnable(t *testing.T) {
	c, p := adminProxy(t, pool.Config{Peers: map[int]string{1: "127.0.0.1:7001", 2: "10.0.0.2:6432"}, PeerID: 1})
	ctx := ctxT(t, 60*time.Second)
	freshDatabase(t, direct(t, c), "disabledb")
	console := adminConn(t, p, "cmpool", "postgres")
	app := connect(t, p.URL("disabledb", ""), pgx.QueryExecModeExec)

	_, err := console.Exec(ctx, "DISABLE disabledb")
	require.NoError(t, err)
	names, _, rows := show(t, console, "SHOW DATABASES")
	require.Equal(t, "1", column(t, names, rows, "name", "disabledb", "disabled"))
	_, err = pgx.Connect(ctx, p.URL("disabledb", ""))
	require.Equal(t, "55000", pgCode(err), "got %v", err)
	require.ErrorContains(t, err, `database "disabledb" is not currently accepting connections`)
	var one int
	require.NoError(t, app.QueryRow(ctx, "select 1").Scan(&one), "a connected client stays")
	other := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	require.NoError(t, other.QueryRow(ctx, "select 1").Scan(&one), "another database is not disabled")
	_, err = console.Exec(ctx, "DISABLE")
	require.Equal(t, "42601", pgCode(err))

	_, err = console.Exec(ctx, "ENABLE disabledb")
	require.NoError(t, err)
	names, _, rows = show(t, console, "SHOW DATABASES")
	require.Equal(t, "0", column(t, names, rows, "name", "disabledb", "disabled"))
	conn, err := pgx.Connect(ctx, p.URL("disabledb", ""))
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))

	// A stats user may not.
	watcher := adminConn(t, p, "cmpool", "watcher")
	_, err = watcher.Exec(ctx, "DISABLE disabledb")
	require.Equal(t, "42501", pgCode(err))

	names, _, rows = show(t, console, "SHOW PEERS")
	require.Equal(t, []string{"peer_id", "host", "port", "pool_size"}, names)
	require.Equal(t, [][]string{{"1", "127.0.0.1", "7001", "0"}, {"2", "10.0.0.2", "6432", "0"}}, rows)
	names, _, rows = show(t, console, "SHOW LISTS")
	require.Equal(t, "2", column(t, names, rows, "list", "peers", "items"))
}

// TestAdminWaitClose: WAIT_CLOSE returns once the server connections a RECONNECT or a
// reload left to close are closed, which waits for the transactions using them.
func TestAdminWaitClose(t *testing.T) {
	c, p := adminProxy(t, pool.Config{})
	ctx := ctxT(t, 60*time.Second)
	freshDatabase(t, direct(t, c), "waitdb")
	console := adminConn(t, p, "cmpool", "postgres")
	app := connect(t, p.URL("waitdb", ""), pgx.QueryExecModeExec)
	_, err := console.Exec(ctx, "WAIT_CLOSE")
	require.NoError(t, err, "nothing to wait for")

	waitClose := func(cmd string, end func()) {
		t.Helper()
		tx, err := app.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "select 1") // holds a server
		require.NoError(t, err)
		end()
		done := make(chan error, 1)
		go func() {
			_, err := console.Exec(context.Background(), cmd)
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("%s returned with a transaction on a connection to close: %v", cmd, err)
		case <-time.After(300 * time.Millisecond):
		}
		require.NoError(t, tx.Commit(ctx))
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not return after the transaction ended", cmd)
		}
	}
	waitClose("WAIT_CLOSE waitdb", func() {
		_, err := console.Exec(ctx, "RECONNECT waitdb")
		require.NoError(t, err)
	})
	names, _, rows := show(t, console, "SHOW SERVERS")
	for _, r := range rows {
		require.Equal(t, "0", r[slices.Index(names, "close_needed")], "after WAIT_CLOSE")
	}
	waitClose("WAIT_CLOSE", func() {
		// A reload that replaces the pools.
		require.NoError(t, p.Server.Reload(integration.WithTestAuth(pool.Config{Primary: c.Primary.URL("", ""), AdminUsers: []string{"postgres"},
			StatsUsers: []string{"watcher"}, DefaultPoolSize: 7})))
	})
}

func TestAdminKillAndReconnect(t *testing.T) {
	c, p := adminProxy(t, pool.Config{})
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	freshDatabase(t, admin, "killdb")
	console := adminConn(t, p, "cmpool", "postgres")

	// RECONNECT: server connections are replaced once back in the pool.
	app := connect(t, p.URL("killdb", ""), pgx.QueryExecModeExec)
	var pid1, pid2 int
	require.NoError(t, app.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid1))
	_, err := console.Exec(ctx, "RECONNECT killdb")
	require.NoError(t, err)
	require.NoError(t, app.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid2))
	require.NotEqual(t, pid1, pid2, "RECONNECT closes the old server connection")

	// KILL: the database's clients are disconnected, and new ones wait for RESUME.
	_, err = console.Exec(ctx, "KILL killdb")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := app.Exec(ctx, "select 1")
		return err != nil
	}, 5*time.Second, 50*time.Millisecond, "the killed client still works")
	waiting := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(context.Background(), p.URL("killdb", ""))
		if err == nil {
			conn.Close(context.Background())
		}
		waiting <- err
	}()
	select {
	case err := <-waiting:
		t.Fatalf("a new client logged in to a killed database: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	_, err = console.Exec(ctx, "RESUME killdb")
	require.NoError(t, err)
	select {
	case err := <-waiting:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the new client did not log in after RESUME")
	}
	// The console itself survived the KILL.
	show(t, console, "SHOW VERSION")
}

// TestReloadPoolSizeUnderLoad changes default_pool_size with RELOAD while clients run
// transactions: none of them fails, and the server connection count follows the new size.
func TestReloadPoolSizeUnderLoad(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 90*time.Second)
	admin := direct(t, c)
	freshDatabase(t, admin, "reloaddb")

	var mu sync.Mutex
	size := 6
	var p *integration.Proxy
	cfg := pool.Config{DefaultPoolSize: 6, AdminUsers: []string{"postgres"}}
	cfg.LoadConfig = func() (pool.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		next := cfg
		next.Primary = c.Primary.URL("", "")
		next.DefaultPoolSize = size
		return next, nil
	}
	p = integration.StartProxy(t, c, cfg)
	console := adminConn(t, p, "cmpool", "postgres")

	servers := func() int {
		var n int
		require.NoError(t, admin.QueryRow(ctx, "select count(*) from pg_stat_activity where datname = 'reloaddb'").Scan(&n))
		return n
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	var done sync.WaitGroup
	for range 12 {
		conn := connect(t, p.URL("reloaddb", ""), pgx.QueryExecModeCacheStatement)
		wg.Add(1)
		done.Add(1)
		go func() {
			defer wg.Done()
			defer done.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				if err := conn.QueryRow(context.Background(), "select count(*) from pg_class where relpages >= $1 and pg_sleep(0.002) is not null", 0).Scan(&n); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	require.LessOrEqual(t, servers(), 6)

	mu.Lock()
	size = 2
	mu.Unlock()
	_, err := console.Exec(ctx, "RELOAD")
	require.NoError(t, err)
	names, _, rows := show(t, console, "SHOW CONFIG")
	require.Equal(t, "2", column(t, names, rows, "key", "default_pool_size", "value"))

	// Once the old pool's connections are back, only the new size remains.
	require.Eventually(t, func() bool { return servers() <= 2 }, 20*time.Second, 100*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	require.LessOrEqual(t, servers(), 2)

	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a client failed during RELOAD: %v", err)
	}

	// Reload through the API with a setting that cannot change live: it is reported.
	next := cfg
	next.Primary = c.Primary.URL("", "")
	next.Listen = "127.0.0.1:1"
	require.NoError(t, p.Server.Reload(integration.WithTestAuth(next)))
	require.Error(t, p.Server.Reload(pool.Config{Primary: "postgres://%zz"}), "an invalid config is refused")
}

func TestTimeouts(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 60*time.Second)

	t.Run("client_idle_timeout", func(t *testing.T) {
		p := integration.StartProxy(t, c, pool.Config{ClientIdleTimeout: 300 * time.Millisecond})
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
		var one int
		require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))
		// Busy clients are not idle: a query longer than the timeout is fine.
		_, err := conn.Exec(ctx, "select pg_sleep(0.5)")
		require.NoError(t, err)
		time.Sleep(700 * time.Millisecond)
		err = conn.QueryRow(ctx, "select 1").Scan(&one)
		require.Error(t, err)
		// pgx reads the FATAL when it next talks to the server.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			require.Equal(t, "57P05", pgErr.Code)
		}
		require.True(t, conn.IsClosed())
	})

	t.Run("idle_transaction_timeout", func(t *testing.T) {
		p := integration.StartProxy(t, c, pool.Config{IdleTransactionTimeout: 300 * time.Millisecond, DefaultPoolSize: 1})
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
		_, err := conn.Exec(ctx, "begin")
		require.NoError(t, err)
		_, err = conn.Exec(ctx, "select 1")
		require.NoError(t, err)
		time.Sleep(700 * time.Millisecond)
		_, err = conn.Exec(ctx, "select 1")
		require.Error(t, err)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			require.Equal(t, "25P03", pgErr.Code)
		}
		// The single server connection was freed: another client gets one at once.
		other := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
		var one int
		require.NoError(t, other.QueryRow(ctxT(t, 5*time.Second), "select 1").Scan(&one))
		assertNoDirtyServers(t, c)
	})

	t.Run("query_timeout", func(t *testing.T) {
		p := integration.StartProxy(t, c, pool.Config{QueryTimeout: 300 * time.Millisecond})
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
		start := time.Now()
		_, err := conn.Exec(ctx, "select pg_sleep(10)")
		require.Equal(t, "57014", pgCode(err), "got %v", err)
		require.Less(t, time.Since(start), 8*time.Second)
		// The session goes on.
		var one int
		require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))
		_, err = conn.Exec(ctx, "select pg_sleep(0.05)")
		require.NoError(t, err, "a query under the timeout is untouched")
	})

	t.Run("query_wait_timeout", func(t *testing.T) {
		p := integration.StartProxy(t, c, pool.Config{QueryWaitTimeout: 300 * time.Millisecond, DefaultPoolSize: 1})
		waiter := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
		holder := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
		// A BEGIN with an option takes the server at once (a plain one is deferred).
		_, err := holder.Exec(ctx, "begin isolation level read committed")
		require.NoError(t, err)
		_, err = waiter.Exec(ctx, "select 1")
		require.Equal(t, "57014", pgCode(err), "got %v", err)
		require.True(t, strings.Contains(err.Error(), "query_wait_timeout"), "%v", err)
		// Again on the same session: each wait has its own bound.
		start := time.Now()
		_, err = waiter.Exec(ctx, "select 1")
		require.Equal(t, "57014", pgCode(err), "got %v", err)
		require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
		_, err = holder.Exec(ctx, "rollback")
		require.NoError(t, err)

		// A wait that ends with a server, well within the bound, then one that does not:
		// the second is bounded from its own start.
		_, err = holder.Exec(ctx, "begin isolation level read committed")
		require.NoError(t, err)
		got := make(chan error, 1)
		go func() { _, err := waiter.Exec(ctx, "select 1"); got <- err }()
		time.Sleep(100 * time.Millisecond)
		_, err = holder.Exec(ctx, "rollback")
		require.NoError(t, err)
		require.NoError(t, <-got, "it got the server the holder gave back")
		_, err = holder.Exec(ctx, "begin isolation level read committed")
		require.NoError(t, err)
		start = time.Now()
		_, err = waiter.Exec(ctx, "select 1")
		require.Equal(t, "57014", pgCode(err), "got %v", err)
		require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
		_, err = holder.Exec(ctx, "rollback")
		require.NoError(t, err)
		var one int
		require.NoError(t, waiter.QueryRow(ctx, "select 1").Scan(&one))
	})
}

// TestReloadUsers: a reload changes who may log in, and how, without touching sessions
// already open; the console reports it in SHOW CONFIG.
func TestReloadUsers(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 30*time.Second)
	cfg := pool.Config{
		AuthType:   pool.AuthSCRAM,
		AdminUsers: []string{"postgres"},
		Users:      map[string]pool.User{"postgres": {Password: "first-pw"}},
	}
	p := integration.StartProxy(t, c, cfg)
	url := func(pw string) string {
		return fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable", pw, p.Addr)
	}
	open := connect(t, url("first-pw"), pgx.QueryExecModeExec)

	next := cfg
	next.Primary = c.Primary.URL("", "")
	next.Users = map[string]pool.User{"postgres": {Password: "second-pw"}}
	require.NoError(t, p.Server.Reload(next))

	_, err := pgx.Connect(ctx, url("first-pw"))
	require.Equal(t, "28P01", pgCode(err), "the old password no longer works: %v", err)
	conn := connect(t, url("second-pw"), pgx.QueryExecModeExec)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))
	require.NoError(t, open.QueryRow(ctx, "select 1").Scan(&one), "a session opened before the reload goes on")

	console := connect(t, fmt.Sprintf("postgres://postgres:second-pw@%s/cmpool?sslmode=disable", p.Addr), pgx.QueryExecModeSimpleProtocol)
	names, _, rows := show(t, console, "SHOW CONFIG")
	require.Equal(t, "scram-sha-256", column(t, names, rows, "key", "auth_type", "value"))
}

// TestAdminCancelInFlight stops the postmaster while a cancel request is on its way to
// it: until the postmaster answers, SHOW POOLS and Stat show the request, the connection
// carrying it and the server it targets, and that server is not lent to the next client.
// Once the postmaster answers (the query it targeted is over: the signal finds an idle
// backend), the next client gets the server and its query runs untouched.
func TestAdminCancelInFlight(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{}) // its own: its postmaster is stopped
	integration.LocalBackendOnly(t, c, "stops the postmaster alone (SIGSTOP by pid) while its backends run on")
	p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1, AdminUsers: []string{"postgres"}})
	ctx := ctxT(t, 60*time.Second)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	console := adminConn(t, p, "pgbouncer", "postgres")
	pids, err := c.ServerPIDs(c.Primary)
	require.NoError(t, err)
	postmaster := pids[0]
	var resumeOnce sync.Once
	resume := func() { resumeOnce.Do(func() { require.NoError(t, syscall.Kill(postmaster, syscall.SIGCONT)) }) }
	t.Cleanup(resume)

	cancelCols := func() map[string]string {
		names, _, rows := show(t, console, "SHOW POOLS")
		out := make(map[string]string)
		for _, col := range []string{"cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active_cancel", "sv_being_canceled"} {
			out[col] = column(t, names, rows, "database", "postgres", col)
		}
		return out
	}
	require.Equal(t, map[string]string{"cl_waiting": "0", "cl_active_cancel_req": "0", "cl_waiting_cancel_req": "0",
		"sv_active_cancel": "0", "sv_being_canceled": "0"}, cancelCols())

	aDone := make(chan error, 1)
	go func() { _, err := a.Exec(ctx, "select pg_sleep(0.5)"); aDone <- err }()
	require.Eventually(t, func() bool { return p.Server.Stat().Pools[0].ActiveServers == 1 }, 10*time.Second, 5*time.Millisecond,
		"a's query never got the server")
	require.NoError(t, syscall.Kill(postmaster, syscall.SIGSTOP))
	cancelDone := make(chan error, 1)
	go func() { cancelDone <- a.PgConn().CancelRequest(ctx) }()

	inFlight := map[string]string{"cl_waiting": "0", "cl_active_cancel_req": "1", "cl_waiting_cancel_req": "0",
		"sv_active_cancel": "1", "sv_being_canceled": "1"}
	require.Eventually(t, func() bool { return maps.Equal(cancelCols(), inFlight) }, 3*time.Second, 10*time.Millisecond,
		"SHOW POOLS while the cancel is unanswered: %v", cancelCols())
	ps := p.Server.Stat().Pools[0]
	require.Equal(t, []int{0, 1, 1, 1}, []int{ps.CancelsWaiting, ps.CancelsActive, ps.CancelConns, ps.ServersBeingCanceled})

	// a's query ends normally (the signal was never sent); its server stays out of the
	// pool while the cancel is unanswered, so b waits.
	require.NoError(t, <-aDone)
	bDone := make(chan error, 1)
	go func() { _, err := b.Exec(ctx, "select pg_sleep(0.2)"); bDone <- err }()
	inFlight["cl_waiting"] = "1"
	require.Eventually(t, func() bool { return maps.Equal(cancelCols(), inFlight) }, 3*time.Second, 10*time.Millisecond,
		"SHOW POOLS while b waits for the server being canceled: %v", cancelCols())

	resume()
	require.NoError(t, <-cancelDone)
	require.NoError(t, <-bDone, "the cancel must not reach the next client's query")
	require.Eventually(t, func() bool {
		return maps.Equal(cancelCols(), map[string]string{"cl_waiting": "0", "cl_active_cancel_req": "0",
			"cl_waiting_cancel_req": "0", "sv_active_cancel": "0", "sv_being_canceled": "0"})
	}, 5*time.Second, 10*time.Millisecond, "SHOW POOLS once the cancel is answered: %v", cancelCols())
}

// TestAdminShowClientsDuringLogins: SHOW CLIENTS, SHOW POOLS and KILL of another database
// list connections that are still logging in without reading what their startup is
// writing (run with -race), and show them in state "login" with no user yet.
func TestAdminShowClientsDuringLogins(t *testing.T) {
	_, p := adminProxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 60*time.Second)
	console := adminConn(t, p, "pgbouncer", "postgres")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				conn, err := pgx.Connect(ctx, p.URL("", ""))
				if err == nil {
					_ = conn.Close(ctx)
				}
			}
		})
	}
	// A socket that never sends its startup packet stays in "login".
	raw, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	defer raw.Close()
	sawLogin := false
	for range 200 {
		names, _, rows := show(t, console, "SHOW CLIENTS")
		for _, r := range rows {
			if r[slices.Index(names, "state")] == "login" {
				sawLogin = true
				require.Empty(t, r[slices.Index(names, "user")], "a client still logging in has no user yet")
			}
		}
		show(t, console, "SHOW POOLS")
		_, err := console.Exec(ctx, "KILL no_such_db")
		require.NoError(t, err)
	}
	close(stop)
	wg.Wait()
	require.True(t, sawLogin, "the silent socket is listed in state login")
}
