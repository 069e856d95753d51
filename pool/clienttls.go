package pool

import (
	"crypto/tls"

	"github.com/cmlite/cmpool/pool/internal/auth"
)

// Client TLS modes (Config.ClientTLSSSLMode), PgBouncer's client_tls_sslmode.
const (
	TLSDisable    = auth.TLSDisable
	TLSAllow      = auth.TLSAllow
	TLSPrefer     = auth.TLSPrefer
	TLSRequire    = auth.TLSRequire
	TLSVerifyCA   = auth.TLSVerifyCA
	TLSVerifyFull = auth.TLSVerifyFull
)

func (c *Config) checkClientTLS() error {
	if c.ClientTLSSSLMode == "" {
		c.ClientTLSSSLMode = TLSDisable
	}
	return c.clientTLSOptions().Check()
}

// clientTLSOptions are c's client_tls_* settings.
func (c *Config) clientTLSOptions() auth.TLSOptions {
	return auth.TLSOptions{Mode: c.ClientTLSSSLMode, CertFile: c.ClientTLSCertFile, KeyFile: c.ClientTLSKeyFile,
		CAFile: c.ClientTLSCAFile, Protocols: c.ClientTLSProtocols, Ciphers: c.ClientTLSCiphers}
}

// loadClientTLS reads the certificate, key and CA files into a tls.Config for clients,
// or returns nil when client TLS is disabled.
func loadClientTLS(cfg *Config) (*tls.Config, error) { return auth.LoadTLS(cfg.clientTLSOptions()) }

// ReloadTLS reads the client TLS certificate, key and CA files again. Connections made
// afterwards use the new ones; on error the old ones stay in use.
func (s *Server) ReloadTLS() error {
	return s.reloadTLS(s.conf())
}

// reloadTLS loads the client TLS files cfg names (cfg has been through New's checks) and
// uses them for new connections. A reload of the whole Config calls it with the new one.
func (s *Server) reloadTLS(cfg *Config) error {
	tc, err := loadClientTLS(cfg)
	if err != nil {
		return err
	}
	s.clientTLS.Store(tc)
	s.log.Info("client tls reloaded", "cert", cfg.ClientTLSCertFile)
	return nil
}
