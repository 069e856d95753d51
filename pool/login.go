package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/protocol"
)

// authenticate logs the client in (see auth.Authenticator.Login) and queues
// AuthenticationOk.
func (c *clientSession) authenticate(ctx context.Context) error {
	who := auth.Client{Database: c.database, User: c.user, Addr: c.conn.RemoteAddr(), EndPoint: c.tlsEndPoint, Log: c.log}
	if c.tlsConn != nil {
		st := c.tlsConn.ConnectionState()
		who.TLS = &st
	}
	return c.srv.authn().Login(ctx, (*loginExchange)(c), who)
}

// loginExchange is a client's end of its login, over its connection.
type loginExchange clientSession

var _ auth.Exchange = (*loginExchange)(nil)

// Send writes msg to the client's buffer.
func (e *loginExchange) Send(msg []byte) error {
	_, err := e.w.Write(msg)
	return err
}

// Receive flushes, then reads the client's next message. A timeout is
// client_login_timeout's; the body of a 'p' message is copied.
func (e *loginExchange) Receive() (byte, []byte, error) {
	c := (*clientSession)(e)
	if err := c.w.Flush(); err != nil {
		return 0, nil, err
	}
	fr, err := c.fr.Next()
	if err != nil {
		if isTimeout(err) {
			return 0, nil, protocol.NewFatal(protocol.CodeProtocolViolation, "client_login_timeout: login not completed in time")
		}
		if errors.Is(err, io.EOF) || isNormalClose(err) {
			return 0, nil, err
		}
		return 0, nil, protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
	}
	if fr.Type != 'p' {
		return fr.Type, nil, nil
	}
	if fr.BodyLen > auth.MaxMessage {
		return fr.Type, nil, auth.ErrMessageTooLong
	}
	body, err := c.fr.Body()
	if err != nil {
		return 0, nil, err
	}
	return fr.Type, append([]byte(nil), body...), nil
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
	if !auth.StartsTLS(b[0]) {
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
	t, err := auth.Handshake(ctx, conn, tc, direct, c.log)
	if err != nil {
		return err
	}
	if direct {
		// c.r's buffer is drained into TLS; read through a fresh buffer.
		c.r = fastio.NewReader(t)
		c.fr = protocol.NewFrameReader(c.r, c.srv.conf().MaxPacketSize)
	} else {
		c.r.Reset(t)
	}
	c.w.Reset(t)
	c.tlsConn = t
	c.tlsEndPoint = auth.EndPoint(tc)
	return nil
}

// prefixConn reads through r, which holds bytes already read from Conn.
type prefixConn struct {
	net.Conn
	r *fastio.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }
