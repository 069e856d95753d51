package pool_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
