package integration_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// TestAuthDefaultNoSilentTrust runs cmpool with no auth settings in front of a primary
// that requires SCRAM, with alice's password in the primary URL: a client must prove
// alice's password, and every other user is refused like a wrong password, even those the
// server itself would let in (the superuser is trusted there).
func TestAuthDefaultNoSilentTrust(t *testing.T) {
	c, _ := secCluster(t)
	primary := userURL(c.Primary.Addr(), "alice", "alice-pw", "postgres", "")
	// Many refused logins come from one address here: no failed-login limit.
	p := integration.StartProxyDefaultAuth(t, c, pool.Config{Primary: primary, AuthFailureLimit: -1})

	t.Run("no password", func(t *testing.T) {
		_, err := loginAs(t, "pgx", userURL(p.Addr, "alice", "", "postgres", ""))
		require.Error(t, err)
		require.Equal(t, "28P01", sqlState(err), err.Error())
		require.ErrorContains(t, err, `password authentication failed for user "alice"`)
		_, err = loginAs(t, "psql", userURL(p.Addr, "alice", "", "postgres", ""))
		require.Error(t, err, "psql without a password")
	})
	runAuthCases(t, p.Addr, strings.Fields(allDrivers), []authCase{
		{name: "right password", user: "alice", password: "alice-pw"},
		{name: "wrong password", user: "alice", password: "nope", wantCode: "28P01", wantMsg: `password authentication failed for user "alice"`},
		{name: "user the server knows, with its password", user: "carol", password: "carol-pw", wantCode: "28P01", wantMsg: `password authentication failed for user "carol"`},
		{name: "superuser the server trusts", user: "postgres", password: "x", wantCode: "28P01", wantMsg: `password authentication failed for user "postgres"`},
	})
	t.Run("unknown user fails like a wrong password", func(t *testing.T) {
		_, wrong := loginAs(t, "pgx", userURL(p.Addr, "alice", "nope", "postgres", ""))
		_, other := loginAs(t, "pgx", userURL(p.Addr, "carol", "carol-pw", "postgres", ""))
		require.Error(t, wrong)
		require.Error(t, other)
		require.Equal(t, strings.ReplaceAll(wrong.Error(), "alice", "carol"), other.Error())
	})
	t.Run("no password anywhere", func(t *testing.T) {
		var logs syncBuffer
		p := integration.StartProxyDefaultAuth(t, c, pool.Config{
			Primary: c.Primary.URL("", ""), // the trusted superuser, without a password
			Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		})
		for _, want := range []string{"no client can log in", "auth_file", "password in the primary URL", "auth_user", "trust"} {
			require.Contains(t, logs.String(), want)
		}
		_, err := loginAs(t, "pgx", userURL(p.Addr, "postgres", "", "postgres", ""))
		require.Equal(t, "28P01", sqlState(err), "%v", err)
	})

	t.Run("explicit trust with an auth file admits only its users", func(t *testing.T) {
		userlist := filepath.Join(t.TempDir(), "userlist.txt")
		require.NoError(t, os.WriteFile(userlist, []byte(`"carol" "carol-pw"`+"\n"), 0o600))
		p := integration.StartProxyDefaultAuth(t, c, pool.Config{Primary: primary, AuthType: pool.AuthTrust, AuthFile: userlist, AuthFailureLimit: -1})
		runAuthCases(t, p.Addr, []string{"pgx", "psql"}, []authCase{
			{name: "listed, no password", user: "carol"},
			{name: "not listed, trusted by the server", user: "postgres", wantCode: "28P01", wantMsg: `password authentication failed for user "postgres"`},
			{name: "not listed, the URL's user", user: "alice", password: "alice-pw", wantCode: "28P01", wantMsg: `password authentication failed for user "alice"`},
		})
	})
	t.Run("explicit trust without a list admits everyone", func(t *testing.T) {
		p := integration.StartProxyDefaultAuth(t, c, pool.Config{Primary: primary, AuthType: pool.AuthTrust})
		runAuthCases(t, p.Addr, []string{"pgx", "psql"}, []authCase{
			{name: "the URL's user, no password", user: "alice"},
			{name: "superuser", user: "postgres", password: "anything"},
		})
	})
}

// TestBinaryDefaultAuth runs the binary as an operator would, with only a primary URL
// that holds alice's password and --listen 0.0.0.0: psql gets in only with alice's
// password. With auth_type trust on that address the binary warns.
func TestBinaryDefaultAuth(t *testing.T) {
	c, _ := secCluster(t)
	cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
	primary := userURL(c.Primary.Addr(), "alice", "alice-pw", "postgres", "")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf("primary = %q\n", primary)), 0o600))
	_, port, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	p := startBinary(t, cfgPath, "0.0.0.0:"+port, freeAddr(t))
	addr := "127.0.0.1:" + port
	require.NotContains(t, p.logs.String(), "auth_type trust")

	_, err = loginAs(t, "psql", userURL(addr, "postgres", "", "postgres", ""))
	require.Error(t, err, "the superuser without a password")
	_, err = loginAs(t, "psql", userURL(addr, "postgres", "s3cret", "postgres", ""))
	require.ErrorContains(t, err, `password authentication failed for user "postgres"`)
	_, err = loginAs(t, "psql", userURL(addr, "alice", "wrong", "postgres", ""))
	require.ErrorContains(t, err, `password authentication failed for user "alice"`)
	got, err := loginAs(t, "psql", userURL(addr, "alice", "alice-pw", "postgres", ""))
	require.NoError(t, err)
	require.Equal(t, "alice", got)

	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf("primary = %q\nauth_type = \"trust\"\n", primary)), 0o600))
	_, port, err = net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	trusting := startBinary(t, cfgPath, "0.0.0.0:"+port, freeAddr(t))
	require.Eventually(t, func() bool {
		return strings.Contains(trusting.logs.String(), "auth_type trust on a non-loopback address")
	}, 5*time.Second, 20*time.Millisecond, trusting.logs.String())
}
