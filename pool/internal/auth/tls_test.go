package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/protocol"
)

func TestTLSOptionsCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    auth.TLSOptions
		want string // "" means valid
	}{
		{"disable", auth.TLSOptions{Mode: auth.TLSDisable}, ""},
		{"no mode", auth.TLSOptions{}, "unknown client_tls_sslmode"},
		{"require without files", auth.TLSOptions{Mode: auth.TLSRequire}, "needs client_tls_cert_file"},
		{"verify-full without CA", auth.TLSOptions{Mode: auth.TLSVerifyFull, CertFile: "c", KeyFile: "k"}, "needs client_tls_ca_file"},
		{"protocols", auth.TLSOptions{Mode: auth.TLSRequire, CertFile: "c", KeyFile: "k", Protocols: "tlsv1.2, tlsv1.3"}, ""},
		{"bad protocol", auth.TLSOptions{Mode: auth.TLSRequire, CertFile: "c", KeyFile: "k", Protocols: "sslv3"}, "client_tls_protocols"},
		{"bad cipher", auth.TLSOptions{Mode: auth.TLSRequire, CertFile: "c", KeyFile: "k", Ciphers: "RC4-MD5"}, "client_tls_ciphers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Check()
			if tc.want == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.want)
			}
		})
	}
}

// writeCert writes a self-signed certificate and its key for 127.0.0.1 into dir.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cmpool"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func TestHandshake(t *testing.T) {
	certFile, keyFile := writeCert(t, t.TempDir())
	tc, err := auth.LoadTLS(auth.TLSOptions{Mode: auth.TLSRequire, CertFile: certFile, KeyFile: keyFile})
	require.NoError(t, err)
	off, err := auth.LoadTLS(auth.TLSOptions{Mode: auth.TLSDisable})
	require.NoError(t, err)
	require.Nil(t, off)

	ep := auth.EndPoint(tc)
	leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	require.NoError(t, err)
	want, err := protocol.TLSServerEndPoint(leaf)
	require.NoError(t, err)
	require.Equal(t, want, ep)

	for _, tc2 := range []struct {
		name   string
		direct bool
		alpn   []string
		ok     bool
	}{
		{"after SSLRequest", false, nil, true},
		{"direct with ALPN", true, []string{"postgresql"}, true},
		{"direct without ALPN", true, nil, false},
	} {
		t.Run(tc2.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer server.Close()
			defer client.Close()
			hello := make(chan byte, 1)
			go func() {
				c := tls.Client(client, &tls.Config{InsecureSkipVerify: true, NextProtos: tc2.alpn})
				_ = c.Handshake()
				hello <- 0
			}()
			conn, err := auth.Handshake(context.Background(), server, tc, tc2.direct, nil)
			if tc2.ok {
				require.NoError(t, err)
				require.NotNil(t, conn)
			} else {
				require.ErrorContains(t, err, "ALPN")
				server.Close()
			}
			<-hello
		})
	}
	require.True(t, auth.StartsTLS(0x16))
	require.False(t, auth.StartsTLS(0))
}
