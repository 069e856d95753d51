package pool

import (
	"fmt"
	"net/url"
	"strings"
)

// Server TLS modes are libpq's sslmode values; pgconn implements them.
var serverSSLModes = map[string]bool{
	"disable": true, "allow": true, "prefer": true, "require": true, "verify-ca": true, "verify-full": true,
}

func (c *Config) checkServerTLS() error {
	if c.ServerTLSSSLMode != "" && !serverSSLModes[c.ServerTLSSSLMode] {
		return fmt.Errorf("pool: unknown server_tls_sslmode %q (want disable, allow, prefer, require, verify-ca or verify-full)", c.ServerTLSSSLMode)
	}
	if (c.ServerTLSCertFile == "") != (c.ServerTLSKeyFile == "") {
		return fmt.Errorf("pool: server_tls_cert_file and server_tls_key_file go together")
	}
	return nil
}

// serverTLSParams are the libpq connection parameters the server_tls_* settings set.
func (c *Config) serverTLSParams() [][2]string {
	var p [][2]string
	for _, kv := range [][2]string{
		{"sslmode", c.ServerTLSSSLMode},
		{"sslrootcert", c.ServerTLSCAFile},
		{"sslcert", c.ServerTLSCertFile},
		{"sslkey", c.ServerTLSKeyFile},
	} {
		if kv[1] != "" {
			p = append(p, kv)
		}
	}
	return p
}

// withServerTLS returns a server connection string with the server_tls_* settings in
// it, so that pgconn.ParseConfig builds the TLS configuration exactly as libpq would.
// Settings override what the string says.
func (c *Config) withServerTLS(connString string) string {
	params := c.serverTLSParams()
	if len(params) == 0 || connString == "" {
		return connString
	}
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return connString // ParseConfig reports it
		}
		q := u.Query()
		for _, kv := range params {
			q.Set(kv[0], kv[1])
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	var b strings.Builder
	b.WriteString(connString)
	for _, kv := range params {
		fmt.Fprintf(&b, " %s='%s'", kv[0], strings.ReplaceAll(strings.ReplaceAll(kv[1], `\`, `\\`), `'`, `\'`))
	}
	return b.String()
}

// applyServerTLS puts the server_tls_* settings into every server connection string.
func (c *Config) applyServerTLS() error {
	if err := c.checkServerTLS(); err != nil {
		return err
	}
	if len(c.serverTLSParams()) == 0 {
		return nil
	}
	c.Primary = c.withServerTLS(c.Primary)
	replicas := make([]string, len(c.Replicas))
	for i, r := range c.Replicas {
		replicas[i] = c.withServerTLS(r)
	}
	c.Replicas = replicas
	dbs := make(map[string]Database, len(c.Databases))
	for name, d := range c.Databases {
		d.URL = c.withServerTLS(d.URL)
		dbs[name] = d
	}
	c.Databases = dbs
	return nil
}
