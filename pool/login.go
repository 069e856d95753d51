package pool

import (
	"context"
	"errors"
	"io"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
)

// authenticate logs the client in (see auth.Authenticator.Login) and queues
// AuthenticationOk.
func (c *clientSession) authenticate(ctx context.Context) error {
	who := auth.Client{Database: c.Database, User: c.User, Addr: c.Conn.Net.RemoteAddr(), EndPoint: c.Conn.TLSEndPoint, Log: c.Log}
	if c.Conn.TLS != nil {
		st := c.Conn.TLS.ConnectionState()
		who.TLS = &st
	}
	return c.srv.authn().Login(ctx, (*loginExchange)(c), who)
}

// loginExchange is a client's end of its login, over its connection.
type loginExchange clientSession

var _ auth.Exchange = (*loginExchange)(nil)

// Send writes msg to the client's buffer.
func (e *loginExchange) Send(msg []byte) error {
	_, err := e.Conn.W.Write(msg)
	return err
}

// Receive flushes, then reads the client's next message. A timeout is
// client_login_timeout's; the body of a 'p' message is copied.
func (e *loginExchange) Receive() (byte, []byte, error) {
	c := (*clientSession)(e)
	if err := c.Conn.W.Flush(); err != nil {
		return 0, nil, err
	}
	fr, err := c.Conn.FR.Next()
	if err != nil {
		if lease.IsTimeout(err) {
			return 0, nil, protocol.NewFatal(protocol.CodeProtocolViolation, "client_login_timeout: login not completed in time")
		}
		if errors.Is(err, io.EOF) || lease.IsNormalClose(err) {
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
	body, err := c.Conn.FR.Body()
	if err != nil {
		return 0, nil, err
	}
	return fr.Type, append([]byte(nil), body...), nil
}
