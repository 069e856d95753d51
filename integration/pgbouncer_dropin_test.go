package integration_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// cmpool in place of PgBouncer: the binary run with the PgBouncer image's environment of
// the horizontal-scaling guide, and on a pgbouncer.ini with its userlist.txt.

// seedPgBouncerEnv is the environment block of the guide's pgbouncer service, word for word.
const seedPgBouncerEnv = `
DATABASES_HOST: changemaker-v2-postgres
DATABASES_PORT: 5432
DATABASES_USER: changemaker
DATABASES_PASSWORD: ${V2_POSTGRES_PASSWORD}
DATABASES_DBNAME: changemaker_v2
POOL_MODE: transaction
MAX_CLIENT_CONN: 1000
DEFAULT_POOL_SIZE: 20
`

// seedDatabaseURL is the guide's DATABASE_URL for the API once it goes through the pooler.
const seedDatabaseURL = "postgresql://changemaker:pass@pgbouncer:6432/changemaker_v2"

// composeEnv turns a compose environment block into VAR=value pairs, substituting ${VAR}
// from vars, as docker compose does.
func composeEnv(t *testing.T, block string, vars map[string]string) []string {
	t.Helper()
	var env []string
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		k, v, ok := strings.Cut(line, ":")
		require.True(t, ok, line)
		v = os.Expand(strings.TrimSpace(v), func(name string) string {
			val, ok := vars[name]
			require.True(t, ok, "no value for ${%s}", name)
			return val
		})
		env = append(env, strings.TrimSpace(k)+"="+v)
	}
	return env
}

// runBinary runs cmpool with args and env (added to a cleared DATABASE_URL, REPLICA_URLS,
// CMPOOL_LISTEN and CMPOOL_CONFIG), and waits until it accepts connections on listen. (Not
// /readyz: that logs in to the primary as the primary's user, which a pgbouncer.ini's "*"
// entry does not name.)
func runBinary(t *testing.T, env []string, listen, metrics string, args ...string) *cmpoolProcess {
	t.Helper()
	cmd := exec.Command(cmpoolBinary(t), append([]string{"--metrics-listen", metrics}, args...)...)
	cmd.Env = append(append(os.Environ(), "DATABASE_URL=", "REPLICA_URLS=", "CMPOOL_LISTEN=", "CMPOOL_CONFIG="), env...)
	p := launch(t, cmd, listen, metrics)
	require.Eventually(t, func() bool {
		select {
		case <-p.exited:
			return true
		default:
		}
		conn, err := net.Dial("tcp", listen)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}, 30*time.Second, 50*time.Millisecond)
	select {
	case <-p.exited:
		t.Fatalf("cmpool exited: %v\n%s", p.err, p.logs.String())
	default:
	}
	return p
}

// TestPgBouncerDropInSeedEnv runs the binary with the guide's PgBouncer environment and
// serves the guide's DATABASE_URL against a real primary.
func TestPgBouncerDropInSeedEnv(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{PasswordAuth: true})
	admin := direct(t, c)
	ctx := ctxT(t, 2*time.Minute)
	_, err := admin.Exec(ctx, "CREATE ROLE changemaker LOGIN PASSWORD 'pass'")
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "CREATE DATABASE changemaker_v2 OWNER changemaker")
	require.NoError(t, err)

	// What compose provides: the password variable, and the service name
	// changemaker-v2-postgres:5432 resolving to the primary.
	env := composeEnv(t, seedPgBouncerEnv, map[string]string{"V2_POSTGRES_PASSWORD": "pass"})
	host, port, err := net.SplitHostPort(c.Primary.Addr())
	require.NoError(t, err)
	for i, kv := range env {
		switch kv {
		case "DATABASES_HOST=changemaker-v2-postgres":
			env[i] = "DATABASES_HOST=" + host
		case "DATABASES_PORT=5432":
			env[i] = "DATABASES_PORT=" + port
		}
	}
	listen := freeAddr(t)
	p := runBinary(t, env, listen, freeAddr(t), "--listen", listen)

	// The primary's URL names the user and password here, so /readyz can log in.
	code, _ := httpGet(t, "http://"+p.metrics+"/readyz")
	require.Equal(t, http.StatusOK, code)

	url := strings.Replace(seedDatabaseURL, "pgbouncer:6432", listen, 1) + "?sslmode=disable"
	app := connect(t, url, pgx.QueryExecModeCacheStatement)
	var user, db string
	require.NoError(t, app.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db))
	require.Equal(t, "changemaker", user)
	require.Equal(t, "changemaker_v2", db)
	_, err = app.Exec(ctx, "CREATE TABLE campaigns (id serial PRIMARY KEY, name text NOT NULL)")
	require.NoError(t, err)
	tx, err := app.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO campaigns (name) VALUES ($1)", "spring")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	var n int
	require.NoError(t, app.QueryRow(ctx, "SELECT count(*) FROM campaigns WHERE name = $1", "spring").Scan(&n))
	require.Equal(t, 1, n)

	// A wrong password is refused, as the image's userlist refused it.
	bad := strings.Replace(url, ":pass@", ":wrong@", 1)
	_, err = pgx.Connect(ctx, bad)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "28P01", pgErr.Code)

	// DEFAULT_POOL_SIZE 20 and transaction pooling: 40 clients in parallel transactions
	// use at most 20 server connections.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			_, err = conn.Exec(ctx, "SELECT pg_sleep(0.3)")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var servers int
	require.NoError(t, admin.QueryRow(ctx,
		"SELECT count(*) FROM pg_stat_activity WHERE usename = 'changemaker' AND datname = 'changemaker_v2'").Scan(&servers))
	require.LessOrEqual(t, servers, 20)
	require.Positive(t, servers)
}

// pendingInPool reports whether pool refuses cfg's settings as "not supported yet": a
// setting cmpool reads but does not act on in this build.
func pendingInPool(t *testing.T, cfg pool.Config) bool {
	t.Helper()
	cfg.Primary = "postgres://127.0.0.1:1/x"
	srv, err := pool.New(cfg)
	if err == nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = srv.Shutdown(ctx)
		return false
	}
	require.ErrorContains(t, err, "is not supported yet")
	return true
}

// TestPgBouncerDropInINI starts the binary on a pgbouncer.ini and userlist.txt written as a
// PgBouncer user writes them, and checks each setting's effect.
func TestPgBouncerDropInINI(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{PasswordAuth: true})
	admin := direct(t, c)
	ctx := ctxT(t, 2*time.Minute)
	for _, sql := range []string{
		"CREATE ROLE alice LOGIN PASSWORD 'alice-pw'",
		"CREATE ROLE bob LOGIN PASSWORD 'bob-pw'",
		"CREATE DATABASE app_real OWNER alice",
		"CREATE DATABASE other OWNER alice",
		"CREATE DATABASE limited_real OWNER alice",
	} {
		_, err := admin.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	host, port, err := net.SplitHostPort(c.Primary.Addr())
	require.NoError(t, err)

	dir := t.TempDir()
	sockDir := filepath.Join(dir, "sock")
	require.NoError(t, os.Mkdir(sockDir, 0o755))
	listen := freeAddr(t)
	_, listenPort, _ := net.SplitHostPort(listen)
	// bob's secret is the server's SCRAM secret, copied from pg_authid as PgBouncer's docs
	// suggest; alice's is plain; ops, the console user, exists only here, as an md5 secret.
	var bobSecret string
	require.NoError(t, admin.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'bob'").Scan(&bobSecret))
	userlist := filepath.Join(dir, "userlist.txt")
	require.NoError(t, os.WriteFile(userlist, []byte(`"alice" "alice-pw"
"bob" "`+bobSecret+`"
"ops" "md5`+md5hex("ops-pw"+"ops")+`"
`), 0o600))

	// A per-user pool mode is one of the settings pool may not act on yet.
	userPoolMode := !pendingInPool(t, pool.Config{Users: map[string]pool.User{"bob": {PoolMode: pool.ModeSession}}})
	users := "[users]\n"
	if userPoolMode {
		users += "bob = pool_mode=session\n"
	}
	// So is max_db_connections.
	dbLimit := !pendingInPool(t, pool.Config{Databases: map[string]pool.Database{"limited": {MaxDBConnections: 2}}})
	limited := ""
	if dbLimit {
		limited = fmt.Sprintf("limited = host=%s port=%s dbname=limited_real max_db_connections=2\n", host, port)
	}
	usersFile := filepath.Join(dir, "users.ini")
	require.NoError(t, os.WriteFile(usersFile, []byte(users), 0o600))

	pidfile := filepath.Join(dir, "pgbouncer.pid")
	logfile := filepath.Join(dir, "pgbouncer.log")
	ini := fmt.Sprintf(`;; pgbouncer.ini
[databases]
* = host=%[1]s port=%[2]s
appdb = host=%[1]s port=%[2]s dbname=app_real pool_size=3
reports = host=localhost port=%[2]s dbname=app_real pool_mode=session
%[9]s
%%include %[3]s

[pgbouncer]
logfile = %[4]s
pidfile = %[5]s
listen_addr = 127.0.0.1
listen_port = %[6]s
unix_socket_dir = %[7]s
unix_socket_mode = 0700
auth_type = md5
auth_file = %[8]s
admin_users = ops
stats_users = alice
pool_mode = transaction
max_client_conn = 50
default_pool_size = 5
server_idle_timeout = 30
query_wait_timeout = 15
server_reset_query = DISCARD ALL
ignore_startup_parameters =
pkt_buf = 4096
syslog = 0
log_connections = 1
log_disconnections = 1
`, host, port, usersFile, logfile, pidfile, listenPort, sockDir, userlist, limited)
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	require.NoError(t, os.WriteFile(iniPath, []byte(ini), 0o600))

	// "cmpool pgbouncer.ini", as PgBouncer is started.
	p := runBinary(t, nil, listen, freeAddr(t), iniPath)

	url := func(database, user, password string) string {
		return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, listen, database)
	}
	var user, db string

	// A listed database maps to its dbname on the primary.
	alice := connect(t, url("appdb", "alice", "alice-pw"), pgx.QueryExecModeCacheStatement)
	require.NoError(t, alice.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db))
	require.Equal(t, []string{"alice", "app_real"}, []string{user, db})
	// An entry on another host name gets a server of its own.
	reports := connect(t, url("reports", "alice", "alice-pw"), pgx.QueryExecModeCacheStatement)
	require.NoError(t, reports.QueryRow(ctx, "SELECT current_database()").Scan(&db))
	require.Equal(t, "app_real", db)
	// "*" serves a database that is not listed, under its own name.
	other := connect(t, url("other", "alice", "alice-pw"), pgx.QueryExecModeCacheStatement)
	require.NoError(t, other.QueryRow(ctx, "SELECT current_database()").Scan(&db))
	require.Equal(t, "other", db)
	// A SCRAM secret in the userlist works (SCRAM pass-through), and a wrong password fails.
	bob := connect(t, url("appdb", "bob", "bob-pw"), pgx.QueryExecModeCacheStatement)
	require.NoError(t, bob.QueryRow(ctx, "SELECT current_user").Scan(&user))
	require.Equal(t, "bob", user)
	_, err = pgx.Connect(ctx, url("appdb", "bob", "nope"))
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "28P01", pgErr.Code)

	// The Unix socket: <unix_socket_dir>/.s.PGSQL.<listen_port>, mode 0700, with psql.
	sock := filepath.Join(sockDir, ".s.PGSQL."+listenPort)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, fi.Mode().Type())
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	psql, err := exec.LookPath("psql")
	if err != nil {
		psql = "/usr/lib/postgresql/15/bin/psql"
	}
	cmd := exec.Command(psql, "-h", sockDir, "-p", listenPort, "-U", "alice", "-d", "appdb", "-Atc", "SELECT current_database()")
	cmd.Env = append(os.Environ(), "PGPASSWORD=alice-pw")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "app_real", strings.TrimSpace(string(out)))

	// The console, as admin_users and stats_users say.
	console := connect(t, url("pgbouncer", "ops", "ops-pw"), pgx.QueryExecModeSimpleProtocol)
	config := map[string]string{}
	for _, row := range consoleRows(t, console, "SHOW CONFIG") {
		config[row["key"]] = row["value"]
	}
	require.Equal(t, "transaction", config["pool_mode"])
	require.Equal(t, "5", config["default_pool_size"])
	require.Equal(t, "50", config["max_client_conn"])
	require.Equal(t, "127.0.0.1:"+listenPort, config["listen_addr"])
	dbs := map[string]map[string]string{}
	for _, row := range consoleRows(t, console, "SHOW DATABASES") {
		dbs[row["name"]] = row
	}
	require.Equal(t, "app_real", dbs["appdb"]["database"])
	require.Equal(t, "3", dbs["appdb"]["pool_size"])
	require.Equal(t, "session", dbs["reports"]["pool_mode"])
	require.Equal(t, "localhost", dbs["reports"]["host"])
	require.Equal(t, "127.0.0.1", dbs["appdb"]["host"])
	require.Equal(t, port, dbs["appdb"]["port"])
	pools := map[string]map[string]string{}
	for _, row := range consoleRows(t, console, "SHOW POOLS") {
		pools[row["database"]+"/"+row["user"]] = row
	}
	require.Contains(t, pools, "appdb/alice")
	require.Contains(t, pools, "other/alice")
	if userPoolMode {
		require.Equal(t, "session", pools["appdb/bob"]["pool_mode"])
	}
	stats := connect(t, url("pgbouncer", "alice", "alice-pw"), pgx.QueryExecModeSimpleProtocol)
	consoleRows(t, stats, "SHOW POOLS")
	_, err = stats.Exec(ctx, "PAUSE")
	require.Error(t, err, "a stats user cannot PAUSE")

	// pg_stat_activity: appdb's servers are logged in to app_real as the client's user.
	var n int
	require.NoError(t, admin.QueryRow(ctx,
		"SELECT count(*) FROM pg_stat_activity WHERE datname = 'app_real' AND usename = 'alice'").Scan(&n))
	require.Positive(t, n)

	if dbLimit {
		// Two users' clients of "limited", in parallel, share its 2 server connections.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			who, pw := "alice", "alice-pw"
			if i%2 == 1 {
				who, pw = "bob", "bob-pw"
			}
			wg.Go(func() {
				conn, err := pgx.Connect(ctx, url("limited", who, pw))
				if err == nil {
					_, err = conn.Exec(ctx, "SELECT pg_sleep(0.3)")
					conn.Close(context.Background())
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'limited_real'").Scan(&n))
		require.LessOrEqual(t, n, 2)
		require.Positive(t, n)
	}

	// pidfile and logfile.
	pid, err := os.ReadFile(pidfile)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(p.cmd.Process.Pid), strings.TrimSpace(string(pid)))
	logged, err := os.ReadFile(logfile)
	require.NoError(t, err)
	require.Contains(t, string(logged), "cmpool starting")

	// SIGUSR1 pauses and SIGUSR2 resumes, as PAUSE and RESUME.
	paused := func() string {
		for _, row := range consoleRows(t, console, "SHOW DATABASES") {
			if row["name"] == "appdb" {
				return row["paused"]
			}
		}
		return ""
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGUSR1))
	require.Eventually(t, func() bool { return paused() == "1" }, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGUSR2))
	require.Eventually(t, func() bool { return paused() == "0" }, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, alice.QueryRow(ctx, "SELECT 1").Scan(&n))

	// SIGHUP reopens the logfile (logrotate moved it away) and reloads.
	require.NoError(t, os.Rename(logfile, logfile+".1"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(logfile)
		return err == nil && len(data) > 0
	}, 20*time.Second, 50*time.Millisecond)

	// SIGQUIT shuts down at once; the pidfile and the socket file go with the process.
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGQUIT))
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("cmpool did not exit on SIGQUIT")
	}
	_, err = os.Stat(pidfile)
	require.True(t, errors.Is(err, os.ErrNotExist), "pidfile left behind: %v", err)
	_, err = os.Stat(sock)
	require.True(t, errors.Is(err, os.ErrNotExist), "socket left behind: %v", err)
}

// consoleRows runs a console command and returns its rows by column name.
func consoleRows(t *testing.T, conn *pgx.Conn, cmd string) []map[string]string {
	t.Helper()
	names, _, rows := show(t, conn, cmd)
	var out []map[string]string
	for _, r := range rows {
		m := map[string]string{}
		for i, name := range names {
			m[name] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// md5hex is the hex MD5 of s, as an md5 secret in a userlist is "md5" + md5hex(password + user).
func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
