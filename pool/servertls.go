package pool

import (
	"fmt"

	"github.com/cmlite/cmpool/pool/internal/backend"
)

func (c *Config) checkServerTLS() error {
	if c.ServerTLSSSLMode != "" && !backend.SSLModes[c.ServerTLSSSLMode] {
		return fmt.Errorf("pool: unknown server_tls_sslmode %q (want disable, allow, prefer, require, verify-ca or verify-full)", c.ServerTLSSSLMode)
	}
	if (c.ServerTLSCertFile == "") != (c.ServerTLSKeyFile == "") {
		return fmt.Errorf("pool: server_tls_cert_file and server_tls_key_file go together")
	}
	return nil
}

// serverTLSParams are the libpq connection parameters the server_tls_* settings set.
func (c *Config) serverTLSParams() [][2]string {
	return backend.TLSParams(c.ServerTLSSSLMode, c.ServerTLSCAFile, c.ServerTLSCertFile, c.ServerTLSKeyFile)
}

// withServerTLS returns a server connection string with the server_tls_* settings in
// it; settings override what the string says.
func (c *Config) withServerTLS(connString string) string {
	return backend.WithParams(connString, c.serverTLSParams())
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
