package integration_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// The security tests share a primary that asks for passwords (scram-sha-256 for every
// user but the superuser; md5 for bob, whose secret is md5) and speaks TLS with a
// certificate from secPKI.
var sec struct {
	once sync.Once
	c    *integration.Cluster
	pki  *testPKI
	err  error
}

// Roles on the password cluster and their passwords.
var secRoles = []struct{ name, password, encryption string }{
	{"alice", "alice-pw", "scram-sha-256"},
	{"bob", "bob-pw", "md5"},
	{"carol", "carol-pw", "scram-sha-256"},
	{"dave", "dave-pw", "scram-sha-256"},
	{"frank", "frank-pw", "scram-sha-256"},
}

func secCluster(t *testing.T) (*integration.Cluster, *testPKI) {
	t.Helper()
	sec.once.Do(func() {
		sec.pki, sec.err = newTestPKI()
		if sec.err != nil {
			return
		}
		cert, key, err := sec.pki.issue("localhost")
		if err != nil {
			sec.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		sec.c, sec.err = integration.Start(ctx, integration.Options{
			PasswordAuth: true,
			HBA:          []string{"host all bob 127.0.0.1/32 md5"},
			TLSCert:      cert,
			TLSKey:       key,
		})
		if sec.err != nil {
			return
		}
		conn, err := pgconn.Connect(ctx, sec.c.Primary.URL("", ""))
		if err != nil {
			sec.err = err
			return
		}
		defer conn.Close(ctx)
		var b strings.Builder
		for _, r := range secRoles {
			fmt.Fprintf(&b, "SET password_encryption = '%s'; CREATE ROLE %s LOGIN PASSWORD '%s';", r.encryption, r.name, r.password)
		}
		b.WriteString(`RESET password_encryption;
			CREATE TABLE auth_lookups (n int); INSERT INTO auth_lookups VALUES (0);
			CREATE FUNCTION auth_lookup(u text) RETURNS TABLE (usename name, passwd text) LANGUAGE sql AS
			$$ UPDATE auth_lookups SET n = n + 1; SELECT rolname, rolpassword FROM pg_authid WHERE rolname = u $$;`)
		_, sec.err = conn.Exec(ctx, b.String()).ReadAll()
	})
	if errors.Is(sec.err, integration.ErrPostgresNotFound) && os.Getenv("CI") != "true" {
		t.Skipf("PostgreSQL not installed: %v", sec.err)
	}
	require.NoError(t, sec.err, "start the password cluster")
	return sec.c, sec.pki
}

// storedSecret returns a role's secret as pg_authid holds it.
func storedSecret(t *testing.T, c *integration.Cluster, role string) string {
	conn := connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var s string
	require.NoError(t, conn.QueryRow(ctxT(t, 5*time.Second), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&s))
	return s
}

func userURL(addr, user, password, database, query string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: addr, Path: "/" + database, RawQuery: query}
	if query == "" {
		u.RawQuery = "sslmode=disable"
	}
	return u.String()
}

// loginAs logs in through a driver ("pgx", "libpq" or "psql") and returns current_user,
// or the error's message.
func loginAs(t *testing.T, driver, connURL string) (user string, err error) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	switch driver {
	case "pgx":
		conn, err := pgx.Connect(ctx, connURL)
		if err != nil {
			return "", err
		}
		defer conn.Close(context.Background())
		err = conn.QueryRow(ctx, "SELECT current_user").Scan(&user)
		return user, err
	case "libpq":
		db, err := sql.Open("postgres", connURL)
		require.NoError(t, err)
		defer db.Close()
		err = db.QueryRowContext(ctx, "SELECT current_user").Scan(&user)
		return user, err
	case "psql":
		cmd := exec.CommandContext(ctx, pgTool(t, "psql"), "-X", "-At", "-c", "SELECT current_user", connURL)
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("psql: %w: %s", err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	t.Fatalf("unknown driver %s", driver)
	return "", nil
}

// sqlState returns the SQLSTATE of a pgx or lib/pq error, or "" for psql's.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	var qe *pq.Error
	if errors.As(err, &qe) {
		return string(qe.Code)
	}
	return ""
}

type authCase struct {
	name, user, password, database string
	// wantCode and wantMsg describe a refused login; empty wantCode means success.
	wantCode, wantMsg string
}

func runAuthCases(t *testing.T, addr string, drivers []string, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		for _, driver := range drivers {
			t.Run(tc.name+"/"+driver, func(t *testing.T) {
				db := tc.database
				if db == "" {
					db = "postgres"
				}
				got, err := loginAs(t, driver, userURL(addr, tc.user, tc.password, db, ""))
				if tc.wantCode == "" {
					require.NoError(t, err)
					require.Equal(t, tc.user, got)
					return
				}
				require.Error(t, err)
				if driver != "psql" {
					require.Equal(t, tc.wantCode, sqlState(err), err.Error())
				}
				require.Contains(t, err.Error(), tc.wantMsg)
			})
		}
	}
}

const (
	wrongPassword = "password authentication failed for user"
	allDrivers    = "pgx libpq psql"
)

// TestClientAuthSCRAM: scram-sha-256 (the default once users are configured) against
// users from the auth file and the TOML, with SCRAM pass-through to a server that
// requires scram-sha-256.
func TestClientAuthSCRAM(t *testing.T) {
	c, _ := secCluster(t)
	userlist := filepath.Join(t.TempDir(), "userlist.txt")
	require.NoError(t, os.WriteFile(userlist, []byte(fmt.Sprintf("%q %q\n%q %q\n",
		"alice", storedSecret(t, c, "alice"), "bob", storedSecret(t, c, "bob"))), 0o600))
	p := integration.StartProxy(t, c, pool.Config{
		AuthFile: userlist,
		Users: map[string]pool.User{
			"carol": {Password: "carol-pw"},
			"frank": {Password: "frank-pw", AuthType: pool.AuthPassword},
		},
		Databases: map[string]pool.Database{"closed": {AuthType: pool.AuthReject}},
	})
	runAuthCases(t, p.Addr, strings.Fields(allDrivers), []authCase{
		{name: "stored SCRAM secret, pass-through", user: "alice", password: "alice-pw"},
		{name: "wrong password", user: "alice", password: "nope", wantCode: "28P01", wantMsg: wrongPassword},
		{name: "unknown user", user: "mallory", password: "x", wantCode: "28P01", wantMsg: wrongPassword},
		{name: "md5 secret cannot check SCRAM", user: "bob", password: "bob-pw", wantCode: "28P01", wantMsg: wrongPassword},
		{name: "plain password from TOML", user: "carol", password: "carol-pw"},
		{name: "password method needs TLS", user: "frank", password: "frank-pw", wantCode: "28000", wantMsg: "needs a TLS connection"},
		{name: "database rule reject", user: "alice", password: "alice-pw", database: "closed", wantCode: "28000", wantMsg: "login rejected"},
	})

	// The pass-through connections really are alice's, authenticated by the server.
	admin := connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var n int
	require.NoError(t, admin.QueryRow(ctxT(t, 5*time.Second),
		"SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice' AND client_port IS NOT NULL").Scan(&n))
	require.Positive(t, n)
}

// TestClientAuthMD5 runs auth_type md5: md5 secrets (passed through to an md5 server),
// SCRAM secrets (PostgreSQL's md5 rule then asks for SCRAM) and plain passwords.
func TestClientAuthMD5(t *testing.T) {
	c, _ := secCluster(t)
	p := integration.StartProxy(t, c, pool.Config{
		AuthType: pool.AuthMD5,
		Users: map[string]pool.User{
			"alice": {Password: storedSecret(t, c, "alice")},
			"bob":   {Password: storedSecret(t, c, "bob")},
			"carol": {Password: "carol-pw"},
		},
	})
	runAuthCases(t, p.Addr, strings.Fields(allDrivers), []authCase{
		{name: "md5 secret, md5 server", user: "bob", password: "bob-pw"},
		{name: "md5 wrong password", user: "bob", password: "bob-pw2", wantCode: "28P01", wantMsg: wrongPassword},
		{name: "SCRAM secret under an md5 rule", user: "alice", password: "alice-pw"},
		{name: "plain password", user: "carol", password: "carol-pw"},
		{name: "unknown user", user: "mallory", password: "x", wantCode: "28P01", wantMsg: wrongPassword},
	})
}

// TestClientAuthPasswordTrustReject covers the cleartext method (allowed without TLS on
// purpose here), trust (which admits only the users listed, as there are some) and reject.
func TestClientAuthPasswordTrustReject(t *testing.T) {
	c, _ := secCluster(t)
	users := map[string]pool.User{"carol": {Password: "carol-pw"}, "alice": {Password: storedSecret(t, c, "alice")}, "bob": {Password: storedSecret(t, c, "bob")}}
	t.Run("password", func(t *testing.T) {
		p := integration.StartProxy(t, c, pool.Config{AuthType: "plain", AuthPlainWithoutTLS: true, Users: users})
		runAuthCases(t, p.Addr, strings.Fields(allDrivers), []authCase{
			{name: "plain secret", user: "carol", password: "carol-pw"},
			{name: "SCRAM secret", user: "alice", password: "alice-pw"},
			{name: "md5 secret", user: "bob", password: "bob-pw"},
			{name: "wrong", user: "carol", password: "x", wantCode: "28P01", wantMsg: wrongPassword},
		})
	})
	t.Run("trust", func(t *testing.T) {
		p := integration.StartProxy(t, c, pool.Config{AuthType: pool.AuthTrust, Users: users})
		runAuthCases(t, p.Addr, []string{"pgx", "psql"}, []authCase{
			{name: "any password", user: "carol", password: "whatever"},
			{name: "carol's server login uses her password", user: "carol", password: ""},
			{name: "only listed users", user: "postgres", password: "", wantCode: "28P01", wantMsg: wrongPassword},
		})
	})
	t.Run("reject", func(t *testing.T) {
		p := integration.StartProxy(t, c, pool.Config{AuthType: pool.AuthReject})
		runAuthCases(t, p.Addr, []string{"pgx", "libpq"}, []authCase{
			{name: "everyone", user: "postgres", password: "", wantCode: "28000", wantMsg: "login rejected"},
		})
	})
}

// TestClientAuthHBA follows an hba file: first matching line wins, no line means reject.
func TestClientAuthHBA(t *testing.T) {
	c, _ := secCluster(t)
	hba := filepath.Join(t.TempDir(), "hba.conf")
	require.NoError(t, os.WriteFile(hba, []byte(`# type   database  user   address                    method
hostssl   all       carol  127.0.0.1/32               trust
host      postgres  carol  127.0.0.1/32               reject
hostnossl all       bob    127.0.0.0/8                md5
host      all       all    10.0.0.0/8                 trust
host      all       alice  127.0.0.1 255.255.255.255  scram-sha-256
local     all       all                               trust
`), 0o600))
	pki := sec.pki
	ca, cert, key := pki.files(t, "localhost")
	p := integration.StartProxy(t, c, pool.Config{
		AuthType:    pool.AuthHBA,
		AuthHBAFile: hba,
		Users: map[string]pool.User{
			"alice": {Password: storedSecret(t, c, "alice")},
			"bob":   {Password: storedSecret(t, c, "bob")},
			"carol": {Password: "carol-pw"},
		},
		ClientTLSSSLMode:  pool.TLSPrefer,
		ClientTLSCertFile: cert,
		ClientTLSKeyFile:  key,
	})
	t.Run("hostssl line over TLS", func(t *testing.T) {
		q := "sslmode=verify-full&sslrootcert=" + url.QueryEscape(ca)
		got, err := loginAs(t, "pgx", strings.Replace(userURL(p.Addr, "carol", "not-needed", "postgres", q), "127.0.0.1", "localhost", 1))
		require.NoError(t, err)
		require.Equal(t, "carol", got)
		_, err = loginAs(t, "pgx", strings.Replace(userURL(p.Addr, "bob", "bob-pw", "postgres", q), "127.0.0.1", "localhost", 1))
		require.Equal(t, "28000", sqlState(err), "hostnossl does not match a TLS client")
	})
	runAuthCases(t, p.Addr, []string{"pgx", "psql"}, []authCase{
		{name: "hostssl skipped without TLS, reject line", user: "carol", password: "carol-pw", wantCode: "28000", wantMsg: "no allowing auth_hba_file entry"},
		{name: "md5 line", user: "bob", password: "bob-pw"},
		{name: "address and mask, scram", user: "alice", password: "alice-pw"},
		{name: "address and mask, scram wrong", user: "alice", password: "x", wantCode: "28P01", wantMsg: wrongPassword},
		{name: "no line", user: "frank", password: "frank-pw", wantCode: "28000", wantMsg: "no allowing auth_hba_file entry"},
	})
}

// TestAuthQueryCache looks secrets up with auth_query and keeps them for auth_cache_ttl.
func TestAuthQueryCache(t *testing.T) {
	c, _ := secCluster(t)
	const ttl = 5 * time.Second // long enough for a few logins under -race on a loaded machine
	p := integration.StartProxy(t, c, pool.Config{
		AuthUser:     integration.Superuser,
		AuthQuery:    "SELECT * FROM auth_lookup($1)",
		AuthCacheTTL: ttl,
	})
	admin := connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	ctx := ctxT(t, time.Minute)
	lookups := func() int {
		var n int
		require.NoError(t, admin.QueryRow(ctx, "SELECT n FROM auth_lookups").Scan(&n))
		return n
	}
	before := lookups()
	login := func(password string) error {
		_, err := loginAs(t, "pgx", userURL(p.Addr, "dave", password, "postgres", ""))
		return err
	}
	for range 3 {
		require.NoError(t, login("dave-pw"))
	}
	require.NoError(t, login("dave-pw"))
	require.Equal(t, before+1, lookups(), "one lookup for four logins within the TTL")
	err := login("wrong")
	require.Equal(t, "28P01", sqlState(err))
	err = login("")
	require.Error(t, err)
	unknownBefore := lookups()
	require.Equal(t, "28P01", sqlState(login2(t, p.Addr, "nobody")))
	require.Equal(t, "28P01", sqlState(login2(t, p.Addr, "nobody")))
	require.Equal(t, unknownBefore+1, lookups(), "an unknown user is cached too")

	// Concurrent logins of a user not in the cache share one lookup.
	concurrentBefore := lookups()
	var wg sync.WaitGroup
	loginErrs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := loginAs(t, "pgx", userURL(p.Addr, "frank", "frank-pw", "postgres", ""))
			loginErrs <- err
		})
	}
	wg.Wait()
	close(loginErrs)
	for err := range loginErrs {
		require.NoError(t, err)
	}
	require.Equal(t, concurrentBefore+1, lookups(), "ten concurrent logins, one lookup")

	// A new password is seen once the TTL has passed.
	_, err = admin.Exec(ctx, "ALTER ROLE dave PASSWORD 'dave-pw2'")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "ALTER ROLE dave PASSWORD 'dave-pw'") })
	time.Sleep(ttl + 200*time.Millisecond)
	require.NoError(t, login("dave-pw2"))
	require.Equal(t, "28P01", sqlState(login("dave-pw")))
}

// TestAuthDBName runs auth_query in auth_dbname, where the lookup function is: a database
// of that name on the primary, or a [databases] entry's database. Without auth_dbname the
// query runs in the primary URL's database, where the function does not exist.
func TestAuthDBName(t *testing.T) {
	c, _ := secCluster(t)
	ctx := ctxT(t, time.Minute)
	admin := connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	var exists bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'authdb')").Scan(&exists))
	if !exists {
		_, err := admin.Exec(ctx, "CREATE DATABASE authdb")
		require.NoError(t, err)
	}
	authdb := connect(t, c.Primary.URL("authdb", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := authdb.Exec(ctx, `CREATE OR REPLACE FUNCTION authdb_lookup(u text) RETURNS TABLE (usename name, passwd text)
		LANGUAGE sql SECURITY DEFINER AS $$ SELECT rolname, rolpassword FROM pg_authid WHERE rolname = u $$`)
	require.NoError(t, err)

	const query = "SELECT * FROM authdb_lookup($1)"
	for _, tc := range []struct {
		name     string
		cfg      pool.Config
		wantCode string
	}{
		{name: "database on the primary", cfg: pool.Config{AuthDBName: "authdb"}},
		{name: "databases entry", cfg: pool.Config{AuthDBName: "lookup", Databases: map[string]pool.Database{"lookup": {DBName: "authdb"}}}},
		{name: "per database", cfg: pool.Config{Databases: map[string]pool.Database{"postgres": {AuthDBName: "authdb"}}}},
		{name: "unset: the primary URL's database", wantCode: "08006"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.AuthUser, cfg.AuthQuery, cfg.AuthCacheTTL = integration.Superuser, query, -1
			p := integration.StartProxy(t, c, cfg)
			got, err := loginAs(t, "pgx", userURL(p.Addr, "frank", "frank-pw", "postgres", ""))
			if tc.wantCode != "" {
				require.Equal(t, tc.wantCode, sqlState(err), "%v", err)
				require.ErrorContains(t, err, "could not look up the user's credentials")
				return
			}
			require.NoError(t, err)
			require.Equal(t, "frank", got)
			_, err = loginAs(t, "pgx", userURL(p.Addr, "frank", "wrong", "postgres", ""))
			require.Equal(t, "28P01", sqlState(err), "%v", err)
		})
	}
}

func login2(t *testing.T, addr, user string) error {
	_, err := loginAs(t, "pgx", userURL(addr, user, "x", "postgres", ""))
	return err
}

// TestFailedLoginLimit refuses an address after auth_failure_limit failures, even with
// the right password.
func TestFailedLoginLimit(t *testing.T) {
	c, _ := secCluster(t)
	p := integration.StartProxy(t, c, pool.Config{
		Users:            map[string]pool.User{"carol": {Password: "carol-pw"}},
		AuthFailureLimit: 3,
	})
	for range 3 {
		_, err := loginAs(t, "pgx", userURL(p.Addr, "carol", "wrong", "postgres", ""))
		require.Equal(t, "28P01", sqlState(err))
	}
	_, err := loginAs(t, "pgx", userURL(p.Addr, "carol", "carol-pw", "postgres", ""))
	require.Equal(t, "28000", sqlState(err))
	require.ErrorContains(t, err, "too many failed logins")
	st := p.Server.Stat()
	require.EqualValues(t, 3, st.LoginFailures)
	require.EqualValues(t, 1, st.LoginsRefused)
}

// TestMessageBeforeAuth: a client that answers the SASL request with a query is cut off.
func TestMessageBeforeAuth(t *testing.T) {
	c, _ := secCluster(t)
	p := integration.StartProxy(t, c, pool.Config{Users: map[string]pool.User{"carol": {Password: "carol-pw"}}})
	for _, tc := range []struct {
		name string
		msg  pgproto3.FrontendMessage
	}{
		{"query", &pgproto3.Query{String: "SELECT 1"}},
		{"second startup", &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "carol"}}},
		{"wrong mechanism", &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256-PLUS", Data: []byte("p=tls-server-end-point,,n=,r=abc")}},
		{"channel binding flag", &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("p=tls-server-end-point,,n=,r=abc")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, p.Addr)
			rc.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "carol", "database": "postgres"}})
			m, err := rc.fe.Receive()
			require.NoError(t, err)
			require.IsType(t, &pgproto3.AuthenticationSASL{}, m)
			rc.send(tc.msg)
			e := rc.expectError()
			require.Equal(t, "08P01", e.Code)
			require.Equal(t, "FATAL", e.Severity)
			rc.expectClosed()
		})
	}
}

// tlsProxy starts cmpool with client TLS in mode, with a certificate for localhost.
func tlsProxy(t *testing.T, c *integration.Cluster, pki *testPKI, mode string) (*integration.Proxy, string, string, string) {
	ca, cert, key := pki.files(t, "localhost")
	p := integration.StartProxy(t, c, pool.Config{
		Users: map[string]pool.User{
			"postgres": {AuthType: pool.AuthTrust},
			"alice":    {Password: storedSecret(t, c, "alice")},
			"frank":    {Password: "frank-pw", AuthType: pool.AuthPassword},
		},
		ClientTLSSSLMode:  mode,
		ClientTLSCertFile: cert,
		ClientTLSKeyFile:  key,
		ClientTLSCAFile:   ca,
	})
	return p, ca, cert, key
}

func TestClientTLS(t *testing.T) {
	c, pki := secCluster(t)
	p, ca, cert, key := tlsProxy(t, c, pki, pool.TLSRequire)
	_, port, _ := net.SplitHostPort(p.Addr)

	t.Run("psql verify-full", func(t *testing.T) {
		dsn := fmt.Sprintf("host=localhost port=%s user=postgres dbname=postgres sslmode=verify-full sslrootcert=%s", port, ca)
		out, err := exec.Command(pgTool(t, "psql"), "-X", "-At", "-c", "SELECT 7", "-c", `\conninfo`, dsn).CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "7\n")
		require.Contains(t, string(out), "SSL connection")
	})
	t.Run("psql and lib/pq: SCRAM and cleartext password over TLS", func(t *testing.T) {
		for _, who := range []struct{ user, password string }{{"alice", "alice-pw"}, {"frank", "frank-pw"}} {
			dsn := fmt.Sprintf("host=localhost port=%s user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s",
				port, who.user, who.password, ca)
			got, err := loginAs(t, "psql", dsn)
			require.NoError(t, err)
			require.Equal(t, who.user, got)
			got, err = loginAs(t, "libpq", dsn)
			require.NoError(t, err)
			require.Equal(t, who.user, got)
		}
	})
	t.Run("SCRAM channel binding", func(t *testing.T) {
		for _, cb := range []string{"require", "prefer", "disable"} {
			dsn := fmt.Sprintf("host=localhost port=%s user=alice password=alice-pw dbname=postgres sslmode=verify-full sslrootcert=%s channel_binding=%s",
				port, ca, cb)
			for _, driver := range []string{"pgx", "psql"} {
				got, err := loginAs(t, driver, dsn)
				require.NoError(t, err, "%s channel_binding=%s", driver, cb)
				require.Equal(t, "alice", got)
			}
		}
	})
	t.Run("pgx verify-full, direct TLS", func(t *testing.T) {
		u := fmt.Sprintf("postgres://postgres@localhost:%s/postgres?sslmode=verify-full&sslrootcert=%s&sslnegotiation=direct", port, ca)
		got, err := loginAs(t, "pgx", u)
		require.NoError(t, err)
		require.Equal(t, "postgres", got)
	})
	t.Run("require refuses a client without TLS", func(t *testing.T) {
		for _, driver := range []string{"pgx", "libpq", "psql"} {
			_, err := loginAs(t, driver, p.URL("", ""))
			require.Error(t, err, driver)
			require.Contains(t, err.Error(), "SSL required", driver)
			if driver != "psql" {
				require.Equal(t, "28000", sqlState(err), driver)
			}
		}
	})
	t.Run("wrong CA is refused by the client", func(t *testing.T) {
		other, err := newTestPKI()
		require.NoError(t, err)
		otherCA, _, _ := other.files(t, "x")
		u := fmt.Sprintf("postgres://postgres@localhost:%s/postgres?sslmode=verify-full&sslrootcert=%s", port, otherCA)
		_, err = loginAs(t, "pgx", u)
		require.ErrorContains(t, err, "certificate")
	})
	t.Run("certificates reload", func(t *testing.T) {
		before := peerSerial(t, p.Addr, ca)
		newCert, newKey, err := pki.issue("localhost")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(cert, newCert, 0o600))
		require.NoError(t, os.WriteFile(key, newKey, 0o600))
		require.Equal(t, before, peerSerial(t, p.Addr, ca), "no reload yet")
		require.NoError(t, p.Server.ReloadTLS())
		require.NotEqual(t, before, peerSerial(t, p.Addr, ca))
		// A broken file keeps the old certificate.
		require.NoError(t, os.WriteFile(key, []byte("junk"), 0o600))
		require.Error(t, p.Server.ReloadTLS())
		_, err = loginAs(t, "pgx", fmt.Sprintf("postgres://postgres@localhost:%s/postgres?sslmode=verify-full&sslrootcert=%s", port, ca))
		require.NoError(t, err)
	})
}

// peerSerial returns the serial number of the certificate the proxy presents.
func peerSerial(t *testing.T, addr, caFile string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = conn.Read(b)
	require.NoError(t, err)
	require.Equal(t, byte('S'), b[0])
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	tc := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	require.NoError(t, tc.Handshake())
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestClientTLSVerifyFull wants a client certificate whose common name is the user.
func TestClientTLSVerifyFull(t *testing.T) {
	c, pki := secCluster(t)
	p, ca, _, _ := tlsProxy(t, c, pki, pool.TLSVerifyFull)
	_, port, _ := net.SplitHostPort(p.Addr)
	_, pgCert, pgKey := pki.files(t, "postgres")
	_, otherCert, otherKey := pki.files(t, "someone")
	base := fmt.Sprintf("postgres://postgres@localhost:%s/postgres?sslmode=verify-full&sslrootcert=%s", port, ca)

	got, err := loginAs(t, "pgx", base+"&sslcert="+pgCert+"&sslkey="+pgKey)
	require.NoError(t, err)
	require.Equal(t, "postgres", got)

	_, err = loginAs(t, "pgx", base+"&sslcert="+otherCert+"&sslkey="+otherKey)
	require.Equal(t, "28000", sqlState(err), err)
	require.ErrorContains(t, err, "common name does not match")

	_, err = loginAs(t, "pgx", base)
	require.Error(t, err, "no client certificate")

	dsn := fmt.Sprintf("host=localhost port=%s user=postgres dbname=postgres sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", port, ca, pgCert, pgKey)
	out, err := exec.Command(pgTool(t, "psql"), "-X", "-At", "-c", "SELECT current_user", dsn).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "postgres\n", string(out))
}

// TestServerTLS logs in to the server over verified TLS, with a password and with SCRAM
// pass-through, and checks it in pg_stat_ssl.
func TestServerTLS(t *testing.T) {
	c, pki := secCluster(t)
	ca, _, _ := pki.files(t, "unused")
	p := integration.StartProxy(t, c, pool.Config{
		ServerTLSSSLMode: "verify-full",
		ServerTLSCAFile:  ca,
		Users: map[string]pool.User{
			"postgres": {Password: "any", AuthType: pool.AuthTrust},
			"alice":    {Password: storedSecret(t, c, "alice")},
			"carol":    {Password: "carol-pw"},
		},
	})
	for _, who := range []struct{ user, password string }{{"postgres", ""}, {"alice", "alice-pw"}, {"carol", "carol-pw"}} {
		t.Run(who.user, func(t *testing.T) {
			conn := connect(t, userURL(p.Addr, who.user, who.password, "postgres", ""), pgx.QueryExecModeSimpleProtocol)
			var ssl bool
			var version string
			require.NoError(t, conn.QueryRow(ctxT(t, 10*time.Second),
				"SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version))
			require.True(t, ssl)
			require.True(t, strings.HasPrefix(version, "TLS"), version)
		})
	}

	// A CA that did not sign the server's certificate fails the server login.
	other, err := newTestPKI()
	require.NoError(t, err)
	otherCA, _, _ := other.files(t, "x")
	p2 := integration.StartProxy(t, c, pool.Config{ServerTLSSSLMode: "verify-full", ServerTLSCAFile: otherCA})
	_, err = loginAs(t, "pgx", p2.URL("", ""))
	require.Equal(t, "08006", sqlState(err), err)
}

// TestThousandSilentClients opens 1000 connections that never send a startup packet:
// each is cut at client_login_timeout with FATAL 08P01, while a real client is served.
func TestThousandSilentClients(t *testing.T) {
	const n = 1000
	const timeout = 3 * time.Second
	_, p := proxy(t, pool.Config{ClientLoginTimeout: timeout, MaxClientConn: n + 50})
	conns := make([]net.Conn, n)
	for i := range conns {
		conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		conns[i] = conn
	}
	opened := time.Now()

	// A real client is served meanwhile.
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	var v int
	require.NoError(t, conn.QueryRow(ctxT(t, 5*time.Second), "SELECT $1::int", 42).Scan(&v))
	require.Equal(t, 42, v)
	require.Less(t, time.Since(opened), timeout, "the real client was served before the silent ones were cut")

	// Every silent connection gets the timeout error, then EOF.
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, sc := range conns {
		wg.Go(func() {
			_ = sc.SetReadDeadline(time.Now().Add(timeout + 30*time.Second))
			fe := pgproto3.NewFrontend(sc, sc)
			m, err := fe.Receive()
			if err != nil {
				errs <- err
				return
			}
			e, ok := m.(*pgproto3.ErrorResponse)
			if !ok || e.Code != "08P01" || !strings.Contains(e.Message, "client_login_timeout") {
				errs <- fmt.Errorf("got %#v", m)
				return
			}
			if _, err := fe.Receive(); err == nil {
				errs <- errors.New("connection not closed after the error")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, time.Since(opened), timeout-time.Second)
	require.Eventually(t, func() bool { return p.Server.Stat().Clients == 1 }, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, conn.QueryRow(ctxT(t, 5*time.Second), "SELECT $1::int", 43).Scan(&v))
}

// TestClientTLSProtocols limits the TLS versions clients may use.
func TestClientTLSProtocols(t *testing.T) {
	c, pki := secCluster(t)
	ca, cert, key := pki.files(t, "localhost")
	p := integration.StartProxy(t, c, pool.Config{
		AuthType:           pool.AuthTrust,
		ClientTLSSSLMode:   pool.TLSRequire,
		ClientTLSCertFile:  cert,
		ClientTLSKeyFile:   key,
		ClientTLSProtocols: "tlsv1.3",
	})
	_, port, _ := net.SplitHostPort(p.Addr)
	u := fmt.Sprintf("postgres://postgres@localhost:%s/postgres?sslmode=verify-full&sslrootcert=%s", port, ca)
	_, err := loginAs(t, "pgx", u)
	require.NoError(t, err, "TLS 1.3 client")

	// A client that stops at TLS 1.2 fails the handshake.
	conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = conn.Read(b)
	require.NoError(t, err)
	require.Equal(t, byte('S'), b[0])
	err = tls.Client(conn, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}).Handshake()
	require.ErrorContains(t, err, "protocol version")
}
