package main

import (
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// envMap is a fake environment for loadConfig.
type envMap map[string]string

func (e envMap) get(k string) string { return e[k] }

// writeConfig writes a TOML file into a temporary directory and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cmpool.toml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestLoadConfigDefaults(t *testing.T) {
	s, err := loadConfig(nil, envMap{}.get)
	require.NoError(t, err)
	cfg := s.poolConfig(nil)
	require.Equal(t, "127.0.0.1:6432", cfg.Listen)
	require.Equal(t, pool.ModeTransaction, cfg.PoolMode)
	require.Equal(t, 20, cfg.DefaultPoolSize)
	require.Equal(t, 1000, cfg.MaxClientConn)
	require.Equal(t, slog.LevelInfo, s.LogLevel)
	require.Empty(t, s.MetricsListen)
	require.Empty(t, s.ConfigFile)
	require.Nil(t, cfg.Replicas)
	require.Nil(t, cfg.Databases)
}

func TestLoadConfigPrecedence(t *testing.T) {
	file := writeConfig(t, `
listen = "file:1"
primary = "postgres://file/db"
pool_mode = "session"
default_pool_size = 11
max_client_conn = 111
metrics_listen = "file:9"
auth_file = "/file/userlist.txt"
log_level = "warn"
`)
	fileEnv := envMap{"CMPOOL_CONFIG": file}
	fullEnv := envMap{
		"CMPOOL_CONFIG":         file,
		"CMPOOL_LISTEN":         "env:1",
		"DATABASE_URL":          "postgres://env/db",
		"POOL_MODE":             "statement",
		"DEFAULT_POOL_SIZE":     "12",
		"MAX_CLIENT_CONN":       "112",
		"CMPOOL_METRICS_LISTEN": "env:9",
		"CMPOOL_AUTH_FILE":      "/env/userlist.txt",
		"CMPOOL_LOG_LEVEL":      "error",
	}
	allFlags := []string{
		"--listen", "flag:1",
		"--primary=postgres://flag/db",
		"--pool-mode", "transaction",
		"--default-pool-size", "13",
		"--max-client-conn", "113",
		"--metrics-listen", "flag:9",
		"--auth-file", "/flag/userlist.txt",
		"--log-level", "debug",
	}
	type want struct {
		listen, primary, metrics, authFile string
		mode                               pool.Mode
		poolSize, maxClient                int
		level                              slog.Level
	}
	tests := []struct {
		name string
		args []string
		env  envMap
		want want
	}{
		{
			name: "defaults",
			env:  envMap{},
			want: want{listen: "127.0.0.1:6432", mode: pool.ModeTransaction, poolSize: 20, maxClient: 1000, level: slog.LevelInfo},
		},
		{
			name: "file over defaults, file named by env",
			env:  fileEnv,
			want: want{"file:1", "postgres://file/db", "file:9", "/file/userlist.txt", pool.ModeSession, 11, 111, slog.LevelWarn},
		},
		{
			name: "file named by flag",
			args: []string{"--config", file},
			env:  envMap{},
			want: want{"file:1", "postgres://file/db", "file:9", "/file/userlist.txt", pool.ModeSession, 11, 111, slog.LevelWarn},
		},
		{
			name: "env over file",
			env:  fullEnv,
			want: want{"env:1", "postgres://env/db", "env:9", "/env/userlist.txt", pool.ModeStatement, 12, 112, slog.LevelError},
		},
		{
			name: "flags over env",
			args: allFlags,
			env:  fullEnv,
			want: want{"flag:1", "postgres://flag/db", "flag:9", "/flag/userlist.txt", pool.ModeTransaction, 13, 113, slog.LevelDebug},
		},
		{
			name: "one flag over env, the rest from env and file",
			args: []string{"--listen", "flag:1"},
			env:  envMap{"CMPOOL_CONFIG": file, "POOL_MODE": "statement"},
			want: want{"flag:1", "postgres://file/db", "file:9", "/file/userlist.txt", pool.ModeStatement, 11, 111, slog.LevelWarn},
		},
		{
			name: "empty env value counts as unset",
			env:  envMap{"CMPOOL_CONFIG": file, "CMPOOL_LISTEN": "", "POOL_MODE": ""},
			want: want{"file:1", "postgres://file/db", "file:9", "/file/userlist.txt", pool.ModeSession, 11, 111, slog.LevelWarn},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadConfig(tt.args, tt.env.get)
			require.NoError(t, err)
			cfg := s.poolConfig(nil)
			got := want{
				listen: cfg.Listen, primary: cfg.Primary, metrics: s.MetricsListen, authFile: cfg.AuthFile,
				mode: cfg.PoolMode, poolSize: cfg.DefaultPoolSize, maxClient: cfg.MaxClientConn, level: s.LogLevel,
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestLoadConfigConfigFileFlagOverEnv(t *testing.T) {
	fromEnv := writeConfig(t, `listen = "env-file:1"`)
	fromFlag := writeConfig(t, `listen = "flag-file:1"`)
	s, err := loadConfig([]string{"--config", fromFlag}, envMap{"CMPOOL_CONFIG": fromEnv}.get)
	require.NoError(t, err)
	require.Equal(t, "flag-file:1", s.Listen)
	require.Equal(t, fromFlag, s.ConfigFile)
}

func TestLoadConfigReplicas(t *testing.T) {
	file := writeConfig(t, `replicas = ["postgres://f1/db", "postgres://f2/db"]`)
	tests := []struct {
		name string
		args []string
		env  envMap
		want []string
	}{
		{
			name: "none",
			env:  envMap{},
			want: nil,
		},
		{
			name: "repeated flag",
			args: []string{"--replica", "postgres://a/db", "--replica=postgres://b/db"},
			env:  envMap{},
			want: []string{"postgres://a/db", "postgres://b/db"},
		},
		{
			name: "comma-separated env, blanks skipped",
			env:  envMap{"REPLICA_URLS": " postgres://a/db ,, postgres://b/db,"},
			want: []string{"postgres://a/db", "postgres://b/db"},
		},
		{
			name: "file array",
			env:  envMap{"CMPOOL_CONFIG": file},
			want: []string{"postgres://f1/db", "postgres://f2/db"},
		},
		{
			name: "env replaces file",
			env:  envMap{"CMPOOL_CONFIG": file, "REPLICA_URLS": "postgres://e/db"},
			want: []string{"postgres://e/db"},
		},
		{
			name: "flags replace env and file",
			args: []string{"--replica", "postgres://a/db", "--replica", "postgres://b/db"},
			env:  envMap{"CMPOOL_CONFIG": file, "REPLICA_URLS": "postgres://e1/db,postgres://e2/db"},
			want: []string{"postgres://a/db", "postgres://b/db"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadConfig(tt.args, tt.env.get)
			require.NoError(t, err)
			require.Equal(t, tt.want, s.poolConfig(nil).Replicas)
		})
	}
}

func TestLoadConfigDurations(t *testing.T) {
	tests := []struct {
		name    string
		value   string // TOML value of server_idle_timeout
		want    time.Duration
		wantErr string
	}{
		{name: "go duration seconds", value: `"2s"`, want: 2 * time.Second},
		{name: "go duration milliseconds", value: `"500ms"`, want: 500 * time.Millisecond},
		{name: "go duration compound", value: `"1m30s"`, want: 90 * time.Second},
		{name: "integer seconds", value: `5`, want: 5 * time.Second},
		{name: "integer seconds as string", value: `"5"`, want: 5 * time.Second},
		{name: "float seconds", value: `1.5`, want: 1500 * time.Millisecond},
		{name: "float seconds as string", value: `"0.25"`, want: 250 * time.Millisecond},
		{name: "negative disables", value: `-1`, want: -time.Second},
		{name: "zero disables, as in PgBouncer", value: `0`, want: -1},
		{name: "zero string disables", value: `"0s"`, want: -1},
		{name: "garbage", value: `"soon"`, wantErr: `server_idle_timeout`},
		{name: "boolean", value: `true`, wantErr: `server_idle_timeout`},
		{name: "too long", value: `1e30`, wantErr: `too long`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeConfig(t, "server_idle_timeout = "+tt.value+"\n")
			s, err := loadConfig([]string{"--config", file}, envMap{}.get)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, s.poolConfig(nil).ServerIdleTimeout)
		})
	}
}

func TestLoadConfigDurationZero(t *testing.T) {
	tests := []struct {
		key     string
		want    func(pool.Config) time.Duration
		wantErr string
	}{
		{key: "server_idle_timeout", want: func(c pool.Config) time.Duration { return c.ServerIdleTimeout }},
		{key: "query_wait_timeout", want: func(c pool.Config) time.Duration { return c.QueryWaitTimeout }},
		{key: "server_lifetime", wantErr: "server_lifetime = 0"},
		{key: "server_connect_timeout", wantErr: "server_connect_timeout must be positive"},
		{key: "client_login_timeout", wantErr: "client_login_timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			file := writeConfig(t, tt.key+" = 0\n")
			s, err := loadConfig([]string{"--config", file}, envMap{}.get)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Negative(t, tt.want(s.poolConfig(nil)), "0 disables, as in PgBouncer")
		})
	}
}

func TestLoadConfigPgBouncerKeys(t *testing.T) {
	file := writeConfig(t, `
primary = "postgres://p/db"
min_pool_size = 3
server_idle_timeout = "30s"
server_lifetime = 1800
server_connect_timeout = 2.5
query_wait_timeout = "45"
client_login_timeout = "10s"
server_reset_query = "DISCARD ALL; RESET ROLE"
max_packet_size = 16777216
max_prepared_statements = 50
`)
	s, err := loadConfig([]string{"--config", file}, envMap{}.get)
	require.NoError(t, err)
	logger := slog.New(slog.DiscardHandler)
	require.Equal(t, pool.Config{
		Listen:                "127.0.0.1:6432",
		Primary:               "postgres://p/db",
		PoolMode:              pool.ModeTransaction,
		DefaultPoolSize:       20,
		MinPoolSize:           3,
		MaxClientConn:         1000,
		ServerIdleTimeout:     30 * time.Second,
		ServerLifetime:        1800 * time.Second,
		ServerConnectTimeout:  2500 * time.Millisecond,
		QueryWaitTimeout:      45 * time.Second,
		ClientLoginTimeout:    10 * time.Second,
		ServerResetQuery:      "DISCARD ALL; RESET ROLE",
		MaxPacketSize:         16777216,
		MaxPreparedStatements: 50,
		Logger:                logger,
	}, s.poolConfig(logger))
}

func TestLoadConfigDatabases(t *testing.T) {
	file := writeConfig(t, `
primary = "postgres://p/db"

[databases.app]
url = "postgres://app-host:5432/appdb"
dbname = "app_real"
user = "app_user"
password = "s3cret"
pool_size = 7
pool_mode = "session"

[databases.reports]
dbname = "analytics"
`)
	s, err := loadConfig([]string{"--config", file}, envMap{}.get)
	require.NoError(t, err)
	require.Equal(t, map[string]pool.Database{
		"app": {
			URL:      "postgres://app-host:5432/appdb",
			DBName:   "app_real",
			User:     "app_user",
			Password: "s3cret",
			PoolSize: 7,
			PoolMode: pool.ModeSession,
		},
		"reports": {DBName: "analytics"},
	}, s.poolConfig(nil).Databases)
}

func TestLoadConfigPinning(t *testing.T) {
	file := writeConfig(t, `
primary = "postgres://p/db"
pin_session_state = false
max_pinned = 4

[databases.app]
pin_session_state = true
max_pinned = 2

[databases.reports]
dbname = "analytics"
`)
	s, err := loadConfig([]string{"--config", file}, envMap{}.get)
	require.NoError(t, err)
	cfg := s.poolConfig(nil)
	require.True(t, cfg.PinSessionStateOff)
	require.Equal(t, 4, cfg.MaxPinned)
	require.NotNil(t, cfg.Databases["app"].PinSessionState)
	require.True(t, *cfg.Databases["app"].PinSessionState)
	require.Equal(t, 2, cfg.Databases["app"].MaxPinned)
	require.Nil(t, cfg.Databases["reports"].PinSessionState, "unset: the global setting")
	require.Zero(t, cfg.Databases["reports"].MaxPinned)

	file = writeConfig(t, `
primary = "postgres://p/db"
`)
	s, err = loadConfig([]string{"--config", file}, envMap{}.get)
	require.NoError(t, err)
	require.False(t, s.poolConfig(nil).PinSessionStateOff, "pinning is on by default")

	file = writeConfig(t, `
primary = "postgres://p/db"
max_pinned = -1
`)
	_, err = loadConfig([]string{"--config", file}, envMap{}.get)
	require.Error(t, err)
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     envMap
		file    string // TOML content; when set, the file is passed with --config
		wantErr []string
		notErr  []string
	}{
		{
			name:    "unknown top-level key",
			file:    "listen = \"x:1\"\npool_size = 3\n",
			wantErr: []string{`unknown key "pool_size"`},
		},
		{
			name:    "unknown keys in a database section",
			file:    "[databases.app]\nurl = \"postgres://h/db\"\nroute = \"replica\"\nhost = \"h\"\nport = 5\n",
			wantErr: []string{`"databases.app.port"`, `"databases.app.host"`},
		},
		{
			name:    "negative workers",
			file:    "workers = -2\n",
			wantErr: []string{"workers must not be negative", "-2"},
		},
		{
			name:    "unknown section",
			file:    "[groups.admins]\nmembers = \"x\"\n",
			wantErr: []string{`unknown key "groups.admins"`},
			notErr:  []string{"members"},
		},
		{
			name:    "bad pool mode flag",
			args:    []string{"--pool-mode", "sesion"},
			wantErr: []string{"-pool-mode", `unknown pool mode "sesion"`},
		},
		{
			name:    "bad pool mode env",
			env:     envMap{"POOL_MODE": "batch"},
			wantErr: []string{"POOL_MODE", `unknown pool mode "batch"`},
		},
		{
			name:    "bad pool mode file",
			file:    `pool_mode = "batch"`,
			wantErr: []string{`"pool_mode"`, `unknown pool mode "batch"`},
		},
		{
			name:    "bad pool mode in database section",
			file:    "[databases.app]\npool_mode = \"batch\"\n",
			wantErr: []string{`"databases.app.pool_mode"`, `unknown pool mode "batch"`},
		},
		{
			name:    "bad pool mode in env even when a flag overrides it",
			args:    []string{"--pool-mode", "session"},
			env:     envMap{"POOL_MODE": "batch"},
			wantErr: []string{"POOL_MODE"},
		},
		{
			name:    "pool size not a number in env",
			env:     envMap{"DEFAULT_POOL_SIZE": "lots"},
			wantErr: []string{"DEFAULT_POOL_SIZE", "not an integer"},
		},
		{
			name:    "negative max client conn flag",
			args:    []string{"--max-client-conn", "-1"},
			wantErr: []string{"-max-client-conn", "must not be negative"},
		},
		{
			name:    "pool size wrong type in file",
			file:    `default_pool_size = 2.5`,
			wantErr: []string{`"default_pool_size"`},
		},
		{
			name:    "negative pool size in database section",
			file:    "[databases.app]\npool_size = -2\n",
			wantErr: []string{`"databases.app.pool_size"`, "must not be negative"},
		},
		{
			name:    "bad log level env",
			env:     envMap{"CMPOOL_LOG_LEVEL": "loud"},
			wantErr: []string{"CMPOOL_LOG_LEVEL"},
		},
		{
			name:    "bad duration",
			file:    `query_wait_timeout = "a while"`,
			wantErr: []string{`"query_wait_timeout"`, `invalid duration "a while"`},
		},
		{
			name:    "empty replica flag",
			args:    []string{"--replica", ""},
			wantErr: []string{"-replica", "empty URL"},
		},
		{
			name:    "unknown flag",
			args:    []string{"--pool-size", "3"},
			wantErr: []string{"pool-size"},
		},
		{
			name:    "stray argument",
			args:    []string{"--listen", "x:1", "extra"},
			wantErr: []string{`unexpected argument "extra"`},
		},
		{
			name:    "missing config file",
			env:     envMap{"CMPOOL_CONFIG": "/nonexistent/cmpool.toml"},
			wantErr: []string{"config file", "/nonexistent/cmpool.toml"},
		},
		{
			name:    "TOML syntax error",
			file:    "listen = \n",
			wantErr: []string{"config file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeConfig(t, tt.file)}, args...)
			}
			env := tt.env
			if env == nil {
				env = envMap{}
			}
			_, err := loadConfig(args, env.get)
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
			for _, notWant := range tt.notErr {
				require.NotContains(t, err.Error(), notWant)
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			_, err := loadConfig([]string{arg}, envMap{}.get)
			require.ErrorIs(t, err, flag.ErrHelp)
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "2s", want: 2 * time.Second},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "5", want: 5 * time.Second},
		{in: " 5 ", want: 5 * time.Second},
		{in: "1.5", want: 1500 * time.Millisecond},
		{in: "0", want: 0},
		{in: "", wantErr: true},
		{in: "5 seconds", wantErr: true},
		{in: "NaN", wantErr: true},
		{in: "Inf", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestLoadConfigScaleOut(t *testing.T) {
	path := writeConfig(t, `
primary = "postgres://u@db/app"
so_reuseport = true
peer_id = 2
peer_listen = "127.0.0.1:7002"
query_timeout = "90s"

[peers]
1 = "10.0.0.1:7001"
2 = "10.0.0.2:7002"
`)
	s, err := loadConfig([]string{"--config", path}, envMap{}.get)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7002", s.PeerListen)
	cfg := s.poolConfig(slog.New(slog.DiscardHandler))
	require.True(t, cfg.ReusePort)
	require.Equal(t, 2, cfg.PeerID)
	require.Equal(t, map[int]string{1: "10.0.0.1:7001", 2: "10.0.0.2:7002"}, cfg.Peers)
	require.Equal(t, 90*time.Second, cfg.QueryTimeout)

	// Flags and environment win over the file.
	s, err = loadConfig([]string{"--config", path, "--peer-id", "1"}, envMap{"CMPOOL_PEER_LISTEN": "127.0.0.1:7001"}.get)
	require.NoError(t, err)
	require.Equal(t, count(1), s.PeerID)
	require.Equal(t, "127.0.0.1:7001", s.PeerListen)

	_, err = loadConfig([]string{"--config", writeConfig(t, "[peers]\nfirst = \"10.0.0.1:7001\"\n")}, envMap{}.get)
	require.ErrorContains(t, err, `key "first" is not a peer id`)
}

func TestLoadConfigAuthAndTLS(t *testing.T) {
	file := writeConfig(t, `
auth_type = "hba"
auth_hba_file = "/etc/cmpool/hba.conf"
auth_user = "pgbouncer"
auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
auth_dbname = "authdb"
auth_cache_ttl = 0
auth_plain_without_tls = true
auth_failure_limit = 5
client_tls_sslmode = "require"
client_tls_cert_file = "/tls/server.crt"
client_tls_key_file = "/tls/server.key"
client_tls_ca_file = "/tls/ca.crt"
client_tls_protocols = "tlsv1.3"
client_tls_ciphers = "default"
server_tls_sslmode = "verify-full"
server_tls_ca_file = "/tls/root.crt"
server_tls_cert_file = "/tls/client.crt"
server_tls_key_file = "/tls/client.key"

[users.alice]
password = "SCRAM-SHA-256$4096:c2FsdA==$a:b"
auth_type = "md5"

[databases.app]
auth_type = "reject"
auth_dbname = "appauth"
`)
	s, err := loadConfig([]string{"--config", file, "--client-tls-sslmode", "verify-ca"}, envMap{"CMPOOL_AUTH_TYPE": "md5"}.get)
	require.NoError(t, err)
	cfg := s.poolConfig(nil)
	require.Equal(t, "md5", cfg.AuthType, "env wins over the file")
	require.Equal(t, "verify-ca", cfg.ClientTLSSSLMode, "flag wins over the file")
	require.Equal(t, "/etc/cmpool/hba.conf", cfg.AuthHBAFile)
	require.Equal(t, "pgbouncer", cfg.AuthUser)
	require.Equal(t, "SELECT usename, passwd FROM pg_shadow WHERE usename = $1", cfg.AuthQuery)
	require.Equal(t, "authdb", cfg.AuthDBName)
	require.Equal(t, "appauth", cfg.Databases["app"].AuthDBName)
	require.Negative(t, cfg.AuthCacheTTL, "0 means no caching")
	require.True(t, cfg.AuthPlainWithoutTLS)
	require.Equal(t, 5, cfg.AuthFailureLimit)
	require.Equal(t, "/tls/server.crt", cfg.ClientTLSCertFile)
	require.Equal(t, "/tls/server.key", cfg.ClientTLSKeyFile)
	require.Equal(t, "/tls/ca.crt", cfg.ClientTLSCAFile)
	require.Equal(t, "tlsv1.3", cfg.ClientTLSProtocols)
	require.Equal(t, "default", cfg.ClientTLSCiphers)
	require.Equal(t, "verify-full", cfg.ServerTLSSSLMode)
	require.Equal(t, "/tls/root.crt", cfg.ServerTLSCAFile)
	require.Equal(t, "/tls/client.crt", cfg.ServerTLSCertFile)
	require.Equal(t, "/tls/client.key", cfg.ServerTLSKeyFile)
	require.Equal(t, map[string]pool.User{"alice": {Password: "SCRAM-SHA-256$4096:c2FsdA==$a:b", AuthType: "md5"}}, cfg.Users)
	require.Equal(t, "reject", cfg.Databases["app"].AuthType)
}
