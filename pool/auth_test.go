package pool_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

func TestNewValidatesAuthAndTLS(t *testing.T) {
	const primary = "postgres://u@127.0.0.1:5432/db"
	dir := t.TempDir()
	n := 0
	hba := func(content string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("hba%d.conf", n))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	for _, tc := range []struct {
		name string
		cfg  pool.Config
		want string
	}{
		{"unknown auth type", pool.Config{AuthType: "kerberos"}, `unknown auth_type "kerberos"`},
		{"hba without file", pool.Config{AuthType: "hba"}, "auth_hba_file"},
		{"missing hba file", pool.Config{AuthType: "hba", AuthHBAFile: "/nonexistent/hba.conf"}, "auth_hba_file"},
		{"hba per database", pool.Config{Databases: map[string]pool.Database{"d": {AuthType: "hba"}}}, `database "d"`},
		{"bad user auth type", pool.Config{Users: map[string]pool.User{"u": {AuthType: "ident"}}}, `user "u"`},
		{"hba bad type", pool.Config{AuthType: "hba", AuthHBAFile: hba("hostgssenc all all 0.0.0.0/0 trust\n")}, "unsupported connection type"},
		{"hba group", pool.Config{AuthType: "hba", AuthHBAFile: hba("host all +admins 0.0.0.0/0 trust\n")}, "groups"},
		{"hba bad address", pool.Config{AuthType: "hba", AuthHBAFile: hba("host all all db.example.com md5\n")}, "host names"},
		{"hba bad mask", pool.Config{AuthType: "hba", AuthHBAFile: hba("host all all 10.0.0.0 255.0.255.0 md5\n")}, "invalid mask"},
		{"hba bad method", pool.Config{AuthType: "hba", AuthHBAFile: hba("host all all 0.0.0.0/0 ident\n")}, "unsupported method"},
		{"hba options", pool.Config{AuthType: "hba", AuthHBAFile: hba("host all all 0.0.0.0/0 md5 clientcert=verify-full\n")}, "options"},
		{"hba short line", pool.Config{AuthType: "hba", AuthHBAFile: hba("host all all\n")}, "line 1"},
		{"hba replication", pool.Config{AuthType: "hba", AuthHBAFile: hba("# c\nlocal replication all trust\n")}, "line 2"},
		{"client tls mode", pool.Config{ClientTLSSSLMode: "on"}, "client_tls_sslmode"},
		{"client tls without cert", pool.Config{ClientTLSSSLMode: "require"}, "client_tls_cert_file"},
		{"verify-ca without CA", pool.Config{ClientTLSSSLMode: "verify-ca", ClientTLSCertFile: "c", ClientTLSKeyFile: "k"}, "client_tls_ca_file"},
		{"bad protocols", pool.Config{ClientTLSSSLMode: "require", ClientTLSCertFile: "c", ClientTLSKeyFile: "k", ClientTLSProtocols: "sslv3"}, "client_tls_protocols"},
		{"bad ciphers", pool.Config{ClientTLSSSLMode: "require", ClientTLSCertFile: "c", ClientTLSKeyFile: "k", ClientTLSCiphers: "RC4-MD5"}, "client_tls_ciphers"},
		{"missing cert file", pool.Config{ClientTLSSSLMode: "require", ClientTLSCertFile: "/nonexistent/c", ClientTLSKeyFile: "/nonexistent/k"}, "client TLS certificate"},
		{"server tls mode", pool.Config{ServerTLSSSLMode: "always"}, "server_tls_sslmode"},
		{"server cert without key", pool.Config{ServerTLSCertFile: "c"}, "go together"},
		{"server CA missing", pool.Config{ServerTLSSSLMode: "verify-full", ServerTLSCAFile: "/nonexistent/ca.pem"}, "primary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Primary = primary
			_, err := pool.New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}

	good := hba(`# every supported form
local     all        all                                  trust
host      all        all    127.0.0.1/32                  scram-sha-256
hostssl   db1,db2    a,b    ::1/128                       md5
hostnossl sameuser   all    10.0.0.0 255.0.0.0            password
host      all        all    all                           reject
`)
	for _, cfg := range []pool.Config{
		{AuthType: "hba", AuthHBAFile: good},
		{AuthType: "plain", Users: map[string]pool.User{"u": {Password: "p", AuthType: "trust"}}},
		{AuthUser: "pgbouncer", AuthCacheTTL: -1},
		{ServerTLSSSLMode: "require"},
		{Primary: "host=127.0.0.1 user=u dbname=db", ServerTLSSSLMode: "prefer"},
	} {
		if cfg.Primary == "" {
			cfg.Primary = primary
		}
		_, err := pool.New(cfg)
		require.NoError(t, err)
	}
}

// lockedBuffer is a bytes.Buffer a logger and a test may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTrustOnNonLoopbackWarns: serving trust on an address other hosts can reach logs a
// warning that names the risk; on loopback, or without trust, it does not.
func TestTrustOnNonLoopbackWarns(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen string
		cfg    pool.Config
		warn   bool
	}{
		{"trust on every address", "0.0.0.0:0", pool.Config{AuthType: pool.AuthTrust}, true},
		{"a user's trust on every address", "0.0.0.0:0", pool.Config{Users: map[string]pool.User{"u": {AuthType: pool.AuthTrust}}}, true},
		{"trust on loopback", "127.0.0.1:0", pool.Config{AuthType: pool.AuthTrust}, false},
		{"default on every address", "0.0.0.0:0", pool.Config{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedBuffer
			cfg := tc.cfg
			cfg.Primary = "postgres://u:pw@127.0.0.1:5432/db"
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			srv, err := pool.New(cfg)
			require.NoError(t, err)
			ln, err := net.Listen("tcp", tc.listen)
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			require.Eventually(t, func() bool { return strings.Contains(logs.String(), "listening") }, 5*time.Second, 5*time.Millisecond)
			require.NoError(t, srv.Shutdown(context.Background()))
			require.ErrorIs(t, <-done, pool.ErrServerClosed)
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "auth_type trust on a non-loopback address") &&
				strings.Contains(logs.String(), "without a password")
			require.Equal(t, tc.warn, warned, logs.String())
		})
	}
}

// TestNoCredentialsLogsAtStart: with nothing to check a password against and no trust,
// New logs an error that says what to configure.
func TestNoCredentialsLogsAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  pool.Config
		want bool
	}{
		{"URL without password", pool.Config{Primary: "postgres://u@127.0.0.1:5432/db"}, true},
		{"URL with password", pool.Config{Primary: "postgres://u:pw@127.0.0.1:5432/db"}, false},
		{"database entry with password", pool.Config{Primary: "postgres://u@127.0.0.1:5432/db",
			Databases: map[string]pool.Database{"app": {User: "app", Password: "pw"}}}, false},
		{"users", pool.Config{Primary: "postgres://u@127.0.0.1:5432/db", Users: map[string]pool.User{"u": {Password: "pw"}}}, false},
		{"explicit trust", pool.Config{Primary: "postgres://u@127.0.0.1:5432/db", AuthType: pool.AuthTrust}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PGPASSWORD", "")
			t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "none"))
			var logs lockedBuffer
			cfg := tc.cfg
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			_, err := pool.New(cfg)
			require.NoError(t, err)
			got := strings.Contains(logs.String(), "level=ERROR") && strings.Contains(logs.String(), "no client can log in")
			require.Equal(t, tc.want, got, logs.String())
			if tc.want {
				for _, want := range []string{"auth_file", "password in the primary URL", "auth_user", "trust"} {
					require.Contains(t, logs.String(), want)
				}
			}
		})
	}
}

// TestDefaultAuthInProcess: an embedded Server with no auth settings, dialed in-process,
// asks for the password it holds for the primary URL's user and refuses everyone else
// like a wrong password.
func TestDefaultAuthInProcess(t *testing.T) {
	backend, stop := exampleBackend()
	defer stop()
	srv, err := pool.New(pool.Config{
		Primary:          "postgres://app:app-secret@" + backend + "/app?sslmode=disable",
		AuthFailureLimit: -1,
		Logger:           slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	defer srv.Shutdown(context.Background())
	login := func(user, password string) error {
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("postgres://%s:%s@127.0.0.1/app?sslmode=disable", user, password))
		require.NoError(t, err)
		cfg.DialFunc = srv.DialContext
		conn, err := pgconn.ConnectConfig(context.Background(), cfg)
		if err == nil {
			conn.Close(context.Background())
		}
		return err
	}
	require.NoError(t, login("app", "app-secret"))
	for _, tc := range []struct{ user, password string }{{"app", ""}, {"app", "wrong"}, {"other", "app-secret"}, {"other", ""}} {
		err := login(tc.user, tc.password)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, "%s/%q", tc.user, tc.password)
		require.Equal(t, "28P01", pgErr.Code)
		require.Equal(t, fmt.Sprintf("password authentication failed for user %q", tc.user), pgErr.Message)
	}
}

// TestTrustByReloadWarns: a reload that turns trust on while cmpool listens on a
// non-loopback address warns as a start with it would.
func TestTrustByReloadWarns(t *testing.T) {
	var logs lockedBuffer
	cfg := pool.Config{Primary: "postgres://u:pw@127.0.0.1:5432/db", Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	srv, err := pool.New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "listening") }, 5*time.Second, 5*time.Millisecond)
	require.NotContains(t, logs.String(), "auth_type trust on a non-loopback address")
	cfg.AuthType = pool.AuthTrust
	require.NoError(t, srv.Reload(cfg))
	require.Contains(t, logs.String(), "auth_type trust on a non-loopback address")
	require.NoError(t, srv.Shutdown(context.Background()))
	require.ErrorIs(t, <-done, pool.ErrServerClosed)
}
