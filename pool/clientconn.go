package pool

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
)

// negotiateSSL answers an SSLRequest: 'S' and a TLS handshake when client TLS is on
// (tlsConf holds its configuration), else 'N'.
func negotiateSSL(cc *lease.ClientConn, ctx context.Context, tlsConf *atomic.Pointer[tls.Config], log *slog.Logger) error {
	tc := tlsConf.Load()
	if tc == nil {
		_, err := cc.Net.Write([]byte{'N'})
		return err
	}
	// Bytes after the SSLRequest would have been sent in the clear but read as if they
	// came through TLS (CVE-2021-23214): refuse them.
	if cc.R.Buffered() > 0 {
		return protocol.NewFatal(protocol.CodeProtocolViolation, "received unencrypted data after SSL request")
	}
	if _, err := cc.Net.Write([]byte{'S'}); err != nil {
		return err
	}
	return handshake(cc, ctx, tc, false, log)
}

// maybeDirectTLS starts TLS at once when the client's first byte begins a TLS handshake
// (direct TLS, PostgreSQL 17's sslnegotiation=direct), with the configuration tlsConf holds
// then (nil when client TLS is off). It reports whether it did.
func maybeDirectTLS(cc *lease.ClientConn, ctx context.Context, tlsConf *atomic.Pointer[tls.Config], log *slog.Logger) (bool, error) {
	b, err := cc.R.Peek(1)
	if err != nil {
		return false, err
	}
	if !auth.StartsTLS(b[0]) {
		return false, nil
	}
	tc := tlsConf.Load()
	if tc == nil {
		return false, protocol.NewFatal(protocol.CodeProtocolViolation, "direct TLS connection, but client TLS is disabled")
	}
	return true, handshake(cc, ctx, tc, true, log)
}

// handshake runs the TLS handshake on the raw connection; the reader and writer then go
// through TLS.
func handshake(cc *lease.ClientConn, ctx context.Context, tc *tls.Config, direct bool, log *slog.Logger) error {
	var conn = cc.Net
	if direct {
		// The first bytes are already in cc.R: hand them to TLS.
		conn = &prefixConn{Conn: cc.Net, r: cc.R}
	}
	t, err := auth.Handshake(ctx, conn, tc, direct, log)
	if err != nil {
		return err
	}
	if direct {
		// cc.R's buffer is drained into TLS; read through a fresh buffer.
		cc.R = fastio.NewReader(t)
		cc.FR = protocol.NewFrameReader(cc.R, cc.MaxPacket)
	} else {
		cc.R.Reset(t)
	}
	cc.W.Reset(t)
	cc.TLS = t
	cc.TLSEndPoint = auth.EndPoint(tc)
	return nil
}

// prefixConn reads through r, which holds bytes already read from Conn.
type prefixConn struct {
	net.Conn
	r *fastio.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }
