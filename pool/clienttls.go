package pool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/cmlite/cmpool/protocol"
)

// Client TLS modes (Config.ClientTLSSSLMode), PgBouncer's client_tls_sslmode.
const (
	TLSDisable    = "disable"
	TLSAllow      = "allow"
	TLSPrefer     = "prefer"
	TLSRequire    = "require"
	TLSVerifyCA   = "verify-ca"
	TLSVerifyFull = "verify-full"
)

// alpnPostgres is the ALPN protocol a direct-TLS client must offer (PostgreSQL 17).
const alpnPostgres = "postgresql"

// tlsHandshakeByte is the first byte of a TLS ClientHello: a client starting TLS
// directly instead of with an SSLRequest.
const tlsHandshakeByte = 0x16

func (c *Config) checkClientTLS() error {
	switch c.ClientTLSSSLMode {
	case "":
		c.ClientTLSSSLMode = TLSDisable
	case TLSDisable, TLSAllow, TLSPrefer, TLSRequire, TLSVerifyCA, TLSVerifyFull:
	default:
		return fmt.Errorf("pool: unknown client_tls_sslmode %q (want disable, allow, prefer, require, verify-ca or verify-full)", c.ClientTLSSSLMode)
	}
	if c.ClientTLSSSLMode == TLSDisable {
		return nil
	}
	if c.ClientTLSCertFile == "" || c.ClientTLSKeyFile == "" {
		return fmt.Errorf("pool: client_tls_sslmode %s needs client_tls_cert_file and client_tls_key_file", c.ClientTLSSSLMode)
	}
	if (c.ClientTLSSSLMode == TLSVerifyCA || c.ClientTLSSSLMode == TLSVerifyFull) && c.ClientTLSCAFile == "" {
		return fmt.Errorf("pool: client_tls_sslmode %s needs client_tls_ca_file", c.ClientTLSSSLMode)
	}
	if _, err := tlsVersions(c.ClientTLSProtocols); err != nil {
		return err
	}
	if _, err := tlsCiphers(c.ClientTLSCiphers); err != nil {
		return err
	}
	return nil
}

// tlsVersions returns the minimum and maximum TLS version of a client_tls_protocols value.
func tlsVersions(s string) ([2]uint16, error) {
	names := map[string]uint16{"tlsv1.0": tls.VersionTLS10, "tlsv1.1": tls.VersionTLS11, "tlsv1.2": tls.VersionTLS12, "tlsv1.3": tls.VersionTLS13}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "secure", "default":
		return [2]uint16{tls.VersionTLS12, tls.VersionTLS13}, nil
	case "all", "legacy":
		return [2]uint16{tls.VersionTLS10, tls.VersionTLS13}, nil
	}
	v := [2]uint16{0xffff, 0}
	for p := range strings.SplitSeq(strings.ToLower(s), ",") {
		n, ok := names[strings.TrimSpace(p)]
		if !ok {
			return v, fmt.Errorf("pool: unknown TLS protocol %q in client_tls_protocols (want tlsv1.0 to tlsv1.3, secure or all)", p)
		}
		v[0], v[1] = min(v[0], n), max(v[1], n)
	}
	return v, nil
}

// tlsCiphers returns the cipher suites of a client_tls_ciphers value; nil means Go's defaults.
func tlsCiphers(s string) ([]uint16, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default", "secure", "normal", "fast":
		return nil, nil
	}
	byName := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		byName[cs.Name] = cs.ID
	}
	var ids []uint16
	for name := range strings.SplitSeq(strings.ReplaceAll(s, ":", ","), ",") {
		name = strings.TrimSpace(name)
		id, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("pool: unknown or insecure cipher suite %q in client_tls_ciphers", name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// loadClientTLS reads the certificate, key and CA files into a tls.Config for clients,
// or returns nil when client TLS is disabled.
func loadClientTLS(cfg *Config) (*tls.Config, error) {
	if cfg.ClientTLSSSLMode == TLSDisable {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.ClientTLSCertFile, cfg.ClientTLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("pool: client TLS certificate: %w", err)
	}
	versions, _ := tlsVersions(cfg.ClientTLSProtocols)
	ciphers, _ := tlsCiphers(cfg.ClientTLSCiphers)
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   versions[0],
		MaxVersion:   versions[1],
		CipherSuites: ciphers,
		NextProtos:   []string{alpnPostgres},
	}
	if cfg.ClientTLSCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("pool: client_tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("pool: client_tls_ca_file %s: no certificates found", cfg.ClientTLSCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if cfg.ClientTLSSSLMode == TLSVerifyCA || cfg.ClientTLSSSLMode == TLSVerifyFull {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

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

// negotiateSSL answers an SSLRequest: 'S' and a TLS handshake when client TLS is on,
// else 'N'.
func (c *clientSession) negotiateSSL(ctx context.Context) error {
	tc := c.srv.clientTLS.Load()
	if tc == nil {
		_, err := c.conn.Write([]byte{'N'})
		return err
	}
	// Bytes after the SSLRequest would have been sent in the clear but read as if they
	// came through TLS (CVE-2021-23214): refuse them.
	if c.r.Buffered() > 0 {
		return protocol.NewFatal(protocol.CodeProtocolViolation, "received unencrypted data after SSL request")
	}
	if _, err := c.conn.Write([]byte{'S'}); err != nil {
		return err
	}
	return c.handshake(ctx, tc, false)
}

// maybeDirectTLS starts TLS at once when the client's first byte begins a TLS handshake
// (direct TLS, PostgreSQL 17's sslnegotiation=direct). It reports whether it did.
func (c *clientSession) maybeDirectTLS(ctx context.Context) (bool, error) {
	b, err := c.r.Peek(1)
	if err != nil {
		return false, err
	}
	if b[0] != tlsHandshakeByte {
		return false, nil
	}
	tc := c.srv.clientTLS.Load()
	if tc == nil {
		return false, protocol.NewFatal(protocol.CodeProtocolViolation, "direct TLS connection, but client TLS is disabled")
	}
	return true, c.handshake(ctx, tc, true)
}

// handshake runs the TLS handshake on the raw connection; the client's reader and writer
// then go through TLS.
func (c *clientSession) handshake(ctx context.Context, tc *tls.Config, direct bool) error {
	var conn = c.conn
	if direct {
		// The first bytes are already in c.r: hand them to TLS.
		conn = &prefixConn{Conn: c.conn, r: c.r}
	}
	t := tls.Server(conn, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		c.log.Info("tls handshake failed", "error", err)
		return fmt.Errorf("tls handshake: %w", err)
	}
	st := t.ConnectionState()
	if direct && st.NegotiatedProtocol != alpnPostgres {
		return errors.New("direct TLS connection without ALPN \"postgresql\"")
	}
	if direct {
		// c.r's buffer is drained into TLS; read through a fresh buffer.
		c.r = newClientReader(t)
		c.fr = protocol.NewFrameReader(c.r, c.srv.conf().MaxPacketSize)
	} else {
		c.r.Reset(t)
	}
	c.w.Reset(t)
	c.tlsConn = t
	c.tlsEndPoint = endPoint(tc)
	return nil
}

// endPoint returns the tls-server-end-point data of the certificate tc presents, or nil
// when it has none (SCRAM-SHA-256-PLUS is then not offered).
func endPoint(tc *tls.Config) []byte {
	if len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return nil
	}
	leaf := tc.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(tc.Certificates[0].Certificate[0]); err != nil {
			return nil
		}
	}
	ep, err := protocol.TLSServerEndPoint(leaf)
	if err != nil {
		return nil
	}
	return ep
}

// checkTLSRequired refuses a client without TLS when client_tls_sslmode wants it, and
// checks the certificate's common name for verify-full.
func (c *clientSession) checkTLSRequired() error {
	mode := c.srv.conf().ClientTLSSSLMode
	switch mode {
	case TLSRequire, TLSVerifyCA, TLSVerifyFull:
	default:
		return nil
	}
	if c.tlsConn == nil {
		c.log.Warn("login refused: no TLS")
		return protocol.NewFatal(protocol.CodeInvalidAuthorization,
			fmt.Sprintf("SSL required: client_tls_sslmode is %s; connect with sslmode=require or stronger", mode))
	}
	if mode == TLSVerifyFull {
		certs := c.tlsConn.ConnectionState().PeerCertificates
		if len(certs) == 0 || certs[0].Subject.CommonName != c.user {
			c.log.Warn("login refused: certificate does not match the user")
			return protocol.NewFatal(protocol.CodeInvalidAuthorization,
				fmt.Sprintf("certificate authentication failed for user %q: common name does not match", c.user))
		}
	}
	return nil
}

// prefixConn reads through r, which holds bytes already read from Conn.
type prefixConn struct {
	net.Conn
	r *clientReader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }
