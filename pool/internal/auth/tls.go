package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/cmlite/cmpool/protocol"
)

// Client TLS modes (client_tls_sslmode), PgBouncer's.
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

// TLSOptions are the client_tls_* settings.
type TLSOptions struct {
	Mode              string // a TLS constant; "" is not one
	CertFile, KeyFile string // cmpool's certificate and key (PEM)
	CAFile            string // the CAs that sign client certificates; "" means none
	Protocols         string // client_tls_protocols; "" means secure (TLS 1.2 and 1.3)
	Ciphers           string // client_tls_ciphers; "" means Go's defaults
}

// Check validates the settings, without reading the files.
func (o TLSOptions) Check() error {
	switch o.Mode {
	case TLSDisable, TLSAllow, TLSPrefer, TLSRequire, TLSVerifyCA, TLSVerifyFull:
	default:
		return fmt.Errorf("pool: unknown client_tls_sslmode %q (want disable, allow, prefer, require, verify-ca or verify-full)", o.Mode)
	}
	if o.Mode == TLSDisable {
		return nil
	}
	if o.CertFile == "" || o.KeyFile == "" {
		return fmt.Errorf("pool: client_tls_sslmode %s needs client_tls_cert_file and client_tls_key_file", o.Mode)
	}
	if (o.Mode == TLSVerifyCA || o.Mode == TLSVerifyFull) && o.CAFile == "" {
		return fmt.Errorf("pool: client_tls_sslmode %s needs client_tls_ca_file", o.Mode)
	}
	if _, err := tlsVersions(o.Protocols); err != nil {
		return err
	}
	if _, err := tlsCiphers(o.Ciphers); err != nil {
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

// LoadTLS reads the certificate, key and CA files into a tls.Config for clients, or
// returns nil when client TLS is disabled. o has been checked (see Check).
func LoadTLS(o TLSOptions) (*tls.Config, error) {
	if o.Mode == TLSDisable {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("pool: client TLS certificate: %w", err)
	}
	versions, _ := tlsVersions(o.Protocols)
	ciphers, _ := tlsCiphers(o.Ciphers)
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   versions[0],
		MaxVersion:   versions[1],
		CipherSuites: ciphers,
		NextProtos:   []string{alpnPostgres},
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("pool: client_tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("pool: client_tls_ca_file %s: no certificates found", o.CAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if o.Mode == TLSVerifyCA || o.Mode == TLSVerifyFull {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

// StartsTLS reports whether first, a client's first byte, begins a TLS handshake:
// direct TLS (PostgreSQL 17's sslnegotiation=direct) instead of an SSLRequest.
func StartsTLS(first byte) bool { return first == tlsHandshakeByte }

// Handshake runs the server side of a TLS handshake on conn. A direct-TLS client
// (direct) must have negotiated ALPN "postgresql". A failed handshake is logged to log
// (nil means no log).
func Handshake(ctx context.Context, conn net.Conn, tc *tls.Config, direct bool, log *slog.Logger) (*tls.Conn, error) {
	t := tls.Server(conn, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		if log != nil {
			log.Info("tls handshake failed", "error", err)
		}
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if direct && t.ConnectionState().NegotiatedProtocol != alpnPostgres {
		return nil, errors.New("direct TLS connection without ALPN \"postgresql\"")
	}
	return t, nil
}

// EndPoint returns the tls-server-end-point data of the certificate tc presents, or nil
// when it has none (SCRAM-SHA-256-PLUS is then not offered).
func EndPoint(tc *tls.Config) []byte {
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
