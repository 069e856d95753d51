package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

func noInclude(name string) ([]byte, error) { return nil, errors.New("no includes here") }

func TestParseINI(t *testing.T) {
	data := `
;; a comment
# another
[databases]
app = host=db port=5432 dbname=app ; not a comment
"my-db" = host=db
'quoted.db' = host=db
[PgBouncer]
Listen_Port = 6433
  auth_type=md5
server_reset_query =
`
	entries, err := parseINI([]byte(data), "x.ini", noInclude)
	require.NoError(t, err)
	require.Len(t, entries, 6)
	require.Equal(t, iniEntry{Section: "databases", Key: "app", Value: "host=db port=5432 dbname=app ; not a comment", File: "x.ini", Line: 5}, entries[0])
	require.Equal(t, "my-db", entries[1].Key)
	require.Equal(t, "quoted.db", entries[2].Key)
	require.Equal(t, iniEntry{Section: "pgbouncer", Key: "listen_port", Value: "6433", File: "x.ini", Line: 9}, entries[3])
	require.Equal(t, "auth_type", entries[4].Key)
	require.Equal(t, "md5", entries[4].Value)
	require.Equal(t, "", entries[5].Value)
}

func TestParseINIErrors(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"[pgbouncer\n", "x.ini:1: syntax error"},
		{"[pgbouncer] x\n", "x.ini:1: syntax error"},
		{"[pgbouncer]\nlisten_port 6432\n", "x.ini:2: syntax error: want key = value"},
		{"[pgbouncer]\n=5\n", "x.ini:2: syntax error"},
		{"listen_port = 5\n", "comes before any [section]"},
		{"[databases]\n\"unterminated = host=x\n", "unterminated quoted key"},
		{"[pgbouncer]\n%include other.ini\n", "x.ini:2: %include: no includes here"},
	} {
		_, err := parseINI([]byte(tc.data), "x.ini", noInclude)
		require.ErrorContains(t, err, tc.want, tc.data)
	}
}

func TestParseINIInclude(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "users.ini")
	require.NoError(t, os.WriteFile(inc, []byte("[users]\nalice = pool_mode=session\n"), 0o600))
	main := filepath.Join(dir, "pgbouncer.ini")
	require.NoError(t, os.WriteFile(main, []byte("[pgbouncer]\n%include "+inc+"\n[pgbouncer]\nlisten_port = 7000\n"), 0o600))
	entries, err := readINIFile(main)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.Equal(t, iniEntry{Section: "users", Key: "alice", Value: "pool_mode=session", File: inc, Line: 2}, entries[0])

	// A file that includes itself stops at the nesting limit.
	loop := filepath.Join(dir, "loop.ini")
	require.NoError(t, os.WriteFile(loop, []byte("%include "+loop+"\n"), 0o600))
	_, err = readINIFile(loop)
	require.ErrorContains(t, err, "nested more than 10 deep")
}

func TestParseConnString(t *testing.T) {
	got, err := parseConnString(`host=db  port = 5432 password='it''s' user='a\'b c' dbname=x`)
	require.Error(t, err) // '' is not an escape in a connection string: the value ends, then "s'" follows
	got, err = parseConnString(`host=db  port = 5432 user='a\'b c\\' dbname=x`)
	require.NoError(t, err)
	require.Equal(t, [][2]string{{"host", "db"}, {"port", "5432"}, {"user", `a'b c\`}, {"dbname", "x"}}, got)
	for _, bad := range []string{"host", "host=db port", "=x", "user='open"} {
		_, err := parseConnString(bad)
		require.Error(t, err, bad)
	}
	got, err = parseConnString("")
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestINIValues(t *testing.T) {
	for _, v := range []string{"1", "yes", "ON", "true"} {
		b, err := iniBool(v)
		require.NoError(t, err)
		require.True(t, b, v)
	}
	for _, v := range []string{"0", "no", "off", "False"} {
		b, err := iniBool(v)
		require.NoError(t, err)
		require.False(t, b, v)
	}
	_, err := iniBool("maybe")
	require.Error(t, err)
	n, err := iniInt("0777")
	require.NoError(t, err)
	require.Equal(t, int64(0o777), n)
	n, err = iniInt("0x10")
	require.NoError(t, err)
	require.Equal(t, int64(16), n)
	for v, want := range map[string]time.Duration{"5": 5 * time.Second, "2.5": 2500 * time.Millisecond, "0": 0, "500ms": 500 * time.Millisecond} {
		d, err := iniDuration(v)
		require.NoError(t, err, v)
		require.Equal(t, want, d.d, v)
	}
	_, err = iniDuration("-1")
	require.Error(t, err)
	_, err = iniDuration("soon")
	require.Error(t, err)
}

func TestLooksLikeINI(t *testing.T) {
	require.True(t, looksLikeINI("pgbouncer.ini", nil))
	require.False(t, looksLikeINI("cmpool.toml", []byte("[pgbouncer]\n")))
	require.True(t, looksLikeINI("/etc/pgbouncer/config", []byte("; x\n[pgbouncer]\nlisten_port = 1\n")))
	require.False(t, looksLikeINI("/etc/cmpool/config", []byte("listen = \"x\"\n[databases.app]\n")))
}

// writeINI writes a pgbouncer.ini into a temporary directory and returns its path.
func writeINI(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pgbouncer.ini")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestLoadINI(t *testing.T) {
	path := writeINI(t, `
[databases]
* = host=db.internal port=5433 password=secret
app = host=db.internal port=5433 dbname=app_prod pool_size=7 pool_mode=transaction
reports = host=reports.internal dbname=reports user=reporter password='p w' route=replica

[users]
alice = pool_mode=statement

[peers]
1 = host=10.0.0.1
2 = host=10.0.0.2 port=7432

[pgbouncer]
listen_addr = 127.0.0.1, ::1
listen_port = 6543
unix_socket_dir =
auth_type = md5
auth_file = /etc/pgbouncer/userlist.txt
admin_users = postgres, admin
default_pool_size = 30
min_pool_size = 2
server_idle_timeout = 0
query_wait_timeout = 30
server_reset_query =
log_connections = 0
log_disconnections = 0
verbose = 2
tcp_defer_accept = 1
pkt_buf = 4096
syslog = 0
peer_id = 2
`)
	s, err := loadConfig([]string{path}, envMap{}.get)
	require.NoError(t, err)
	require.Equal(t, path, s.ConfigFile)
	cfg := s.poolConfig(nil)
	require.Equal(t, "host='db.internal' port='5433' password='secret'", cfg.Primary)
	require.Equal(t, "127.0.0.1:6543,[::1]:6543", cfg.Listen)
	require.Empty(t, s.UnixSocketDir)
	require.Equal(t, pool.ModeSession, cfg.PoolMode, "PgBouncer's default pool_mode")
	require.Equal(t, 100, cfg.MaxClientConn, "PgBouncer's default max_client_conn")
	require.Equal(t, "md5", cfg.AuthType)
	require.Equal(t, []string{"postgres", "admin"}, cfg.AdminUsers)
	require.Equal(t, 30, cfg.DefaultPoolSize)
	require.Equal(t, 2, cfg.MinPoolSize)
	require.Equal(t, time.Duration(-1), cfg.ServerIdleTimeout, "0 disables, as in PgBouncer")
	require.Equal(t, 30*time.Second, cfg.QueryWaitTimeout)
	require.Equal(t, "-", cfg.ServerResetQuery, "empty runs nothing, as in PgBouncer")
	require.False(t, cfg.LogConnections)
	require.Equal(t, int(-4), int(s.LogLevel))
	require.Equal(t, 2, cfg.PeerID)
	require.Equal(t, map[int]string{1: "10.0.0.1:6432", 2: "10.0.0.2:7432"}, cfg.Peers)
	require.Equal(t, pool.Database{DBName: "app_prod", PoolSize: 7, PoolMode: pool.ModeTransaction}, cfg.Databases["app"],
		"an entry on the primary's server keeps the primary, so that it is routed")
	require.Equal(t, pool.Database{URL: "host='reports.internal' port='5432'", DBName: "reports", User: "reporter", Password: "p w", Route: "replica"},
		cfg.Databases["reports"])
	require.Equal(t, pool.User{PoolMode: pool.ModeStatement}, cfg.Users["alice"])

	// The flags and the environment still win over the file.
	s, err = loadConfig([]string{"--pool-mode", "transaction", path}, envMap{"DATABASE_URL": "postgres://other/x"}.get)
	require.NoError(t, err)
	require.Equal(t, poolMode("transaction"), s.PoolMode)
	require.Equal(t, "postgres://other/x", s.Primary)
	s, err = loadConfig([]string{"--config", path}, envMap{}.get)
	require.NoError(t, err)
	require.Equal(t, poolMode("session"), s.PoolMode)
}

func TestLoadINIDefaults(t *testing.T) {
	path := writeINI(t, "[databases]\napp = host=127.0.0.1 port=5432\n[pgbouncer]\n")
	s, err := loadConfig([]string{path}, envMap{}.get)
	require.NoError(t, err)
	require.Equal(t, "/tmp", s.UnixSocketDir, "PgBouncer's default unix_socket_dir")
	require.Equal(t, "127.0.0.1:6432", s.Listen)
	require.True(t, s.LogConnections, "PgBouncer logs connections by default")
	require.Equal(t, "host='127.0.0.1' port='5432' dbname='app'", s.Primary)
}

func TestLoadINIErrors(t *testing.T) {
	for _, tc := range []struct{ ini, want string }{
		{"[pgbouncer]\nnot_a_key = 1\n", `unknown key "not_a_key" in [pgbouncer]`},
		{"[pgbouncer]\nuser = postgres\n", "user = postgres is not supported: cmpool does not switch users"},
		{"[pgbouncer]\npkt_buf = 8192\n", "pkt_buf = 8192 is not supported: cmpool sizes its buffers itself"},
		{"[pgbouncer]\nsuspend_timeout = 30\n", "use so_reuseport"},
		{"[pgbouncer]\npool_mode = sometimes\n", "unknown pool mode"},
		{"[pgbouncer]\nlisten_port = 70000\n", "want a port number"},
		{"[pgbouncer]\nserver_lifetime = 0\n", "server_lifetime = 0"},
		{"[pgbouncer]\nquery_timeout = -1\n", "must not be negative"},
		{"[pgbouncer]\n[databases]\n* = host=x dbname=y\n", "the * entry takes host, port and password only"},
		{"[pgbouncer]\n[databases]\napp = host=a,b\n", "a list of hosts is not supported"},
		{"[pgbouncer]\n[databases]\napp = host=a connect_query='SELECT 1'\n", "connect_query = SELECT 1 is not supported: use ALTER ROLE"},
		{"[pgbouncer]\n[databases]\napp = host=a colour=blue\n", `unknown parameter "colour"`},
		{"[pgbouncer]\n[databases]\npgbouncer = host=a\n", "reserved for the admin console"},
		{"[pgbouncer]\n[users]\nbob = query_timeout=5\n", "query_timeout is global"},
		{"[pgbouncer]\n[peers]\n1 = host=/tmp\n", "a Unix socket is not supported"},
		{"[pgbouncer]\n[other]\nx = 1\n", "unknown section [other]"},
	} {
		_, err := loadConfig([]string{writeINI(t, tc.ini)}, envMap{}.get)
		require.ErrorContains(t, err, tc.want, tc.ini)
	}
}

func TestPgBouncerFlags(t *testing.T) {
	path := writeINI(t, "[pgbouncer]\n")
	s, err := loadConfig([]string{"-v", "-q", path}, envMap{}.get)
	require.NoError(t, err)
	require.Equal(t, slog.LevelDebug, s.LogLevel)
	require.True(t, s.Quiet)
	s, err = loadConfig([]string{path}, envMap{}.get)
	require.NoError(t, err)
	require.False(t, s.Quiet)
	require.Equal(t, slog.LevelInfo, s.LogLevel)
}

func TestPgBouncerFlagsRefused(t *testing.T) {
	path := writeINI(t, "[pgbouncer]\n")
	for flag, want := range map[string]string{"-R": "so_reuseport", "-d": "foreground", "-u": "start cmpool as that user"} {
		_, err := loadConfig([]string{flag, path}, envMap{}.get)
		require.ErrorContains(t, err, want, flag)
	}
}

func TestImageEnv(t *testing.T) {
	// The seed's compose block, with the password substituted as compose does.
	env := envMap{
		"DATABASES_HOST":     "changemaker-v2-postgres",
		"DATABASES_PORT":     "5432",
		"DATABASES_USER":     "changemaker",
		"DATABASES_PASSWORD": "p@ss/word",
		"DATABASES_DBNAME":   "changemaker_v2",
		"POOL_MODE":          "transaction",
		"MAX_CLIENT_CONN":    "1000",
		"DEFAULT_POOL_SIZE":  "20",
	}
	s, err := loadConfig(nil, env.get)
	require.NoError(t, err)
	require.Equal(t, "postgres://changemaker:p%40ss%2Fword@changemaker-v2-postgres:5432/changemaker_v2", s.Primary)
	require.Equal(t, 1000, int(s.MaxClientConn))

	env["DATABASE_URL"] = "postgres://elsewhere/db"
	env["LISTEN_PORT"] = "7432"
	env["CMPOOL_LISTEN"] = "0.0.0.0:6432"
	env["AUTH_TYPE"] = "md5"
	env["ADMIN_USERS"] = "changemaker,ops"
	env["PGBOUNCER_SERVER_IDLE_TIMEOUT"] = "30"
	env["REPLICA_URL"] = "postgres://replica/db"
	env["REPLICA_URLS"] = "postgres://r1/db"
	s, err = loadConfig(nil, env.get)
	require.NoError(t, err)
	require.Equal(t, "postgres://elsewhere/db", s.Primary, "DATABASE_URL wins over DATABASES_*")
	require.Equal(t, "0.0.0.0:7432", s.Listen, "LISTEN_PORT changes the port of CMPOOL_LISTEN")
	require.Equal(t, "md5", s.AuthType)
	require.Equal(t, stringList{"changemaker", "ops"}, s.AdminUsers)
	require.Equal(t, 30*time.Second, s.ServerIdleTimeout.d)
	require.Equal(t, []string{"postgres://r1/db", "postgres://replica/db"}, s.Replicas)

	s, err = loadConfig([]string{"--listen", "127.0.0.1:9999"}, env.get)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9999", s.Listen, "--listen wins")

	_, err = loadConfig(nil, envMap{"DATABASES_USER": "x"}.get)
	require.ErrorContains(t, err, "DATABASES_HOST is not")
	_, err = loadConfig(nil, envMap{"PGBOUNCER_PKT_BUF": "9000"}.get)
	require.ErrorContains(t, err, "PGBOUNCER_PKT_BUF: pkt_buf = 9000 is not supported")
	_, err = loadConfig(nil, envMap{"LISTEN_PORT": "x"}.get)
	require.ErrorContains(t, err, "LISTEN_PORT")
}

func TestListenAddrs(t *testing.T) {
	require.Equal(t, ":6432", listenAddrs("*", ""))
	require.Equal(t, "127.0.0.1:7000,[::1]:7000", listenAddrs("127.0.0.1,::1", "7000"))
	require.Equal(t, "127.0.0.1:7000", listenAddrs("", "7000"))
}

func FuzzParseINI(f *testing.F) {
	for _, seed := range []string{
		"[pgbouncer]\nlisten_port = 6432\n",
		"[databases]\n* = host=db port=5432\n\"a\"\"b\" = host=x password='q\\'w'\n",
		"; c\n# c\n[users]\nalice = pool_mode=session max_user_connections=3\n",
		"[pgbouncer]\n%include other.ini\n",
		"'k'=v\n[x\n",
		"[pgbouncer]\nserver_reset_query =\nunix_socket_mode = 0777\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseINI(data, "fuzz.ini", noInclude)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Key == "" || strings.ContainsAny(e.Value, "\n") || e.Section == "" {
				t.Fatalf("bad entry %+v", e)
			}
			if params, err := parseConnString(e.Value); err == nil {
				for _, kv := range params {
					if kv[0] == "" {
						t.Fatalf("empty parameter name in %q", e.Value)
					}
				}
			}
		}
		// Mapping onto settings must not panic either.
		var s settings
		_ = applyINI(entries, &s)
	})
}

func TestRunTakesTheConfigFileFirst(t *testing.T) {
	// "cmpool pgbouncer.ini", as PgBouncer is started: the file is read (here it refuses a
	// key), it is not taken for an unknown command.
	path := writeINI(t, "[pgbouncer]\nsuspend_timeout = 30\n")
	var stdout, stderr strings.Builder
	code := run([]string{path}, envMap{}.get, &stdout, &stderr, make(chan os.Signal))
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), "suspend_timeout = 30 is not supported")
	code = run([]string{"missing.ini"}, envMap{}.get, &stdout, &stderr, make(chan os.Signal))
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), "missing.ini: no such file")
}
