package pool

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/protocol"
)

// authenticate refuses a client without the TLS its settings require, logs it in with the
// method its rules choose, and sends AuthenticationOk. Failures are logged without
// secrets and counted per address.
func (c *clientSession) authenticate(ctx context.Context) error {
	err := c.authenticateWith(ctx)
	c.srv.authn().Count(err)
	return err
}

func (c *clientSession) authenticateWith(ctx context.Context) error {
	if err := c.checkTLSRequired(); err != nil {
		return err
	}
	a := c.srv.authn()
	isTLS := c.tlsConn != nil
	addr := c.conn.RemoteAddr()
	host := auth.HostOf(addr)
	method := a.Method(c.database, c.user, addr, isTLS)
	if method != AuthTrust && a.Throttled(host) {
		c.log.Warn("login refused: too many failed logins", "method", method)
		return protocol.NewFatal(protocol.CodeInvalidAuthorization, "too many failed logins from this address; try again later")
	}
	var reason string
	var err error
	switch method {
	case AuthTrust:
		reason, err = c.authTrust(ctx)
	case AuthReject:
		c.log.Warn("login rejected by auth rules", "tls", isTLS)
		if c.srv.conf().AuthType == AuthHBA {
			return protocol.NewFatal(protocol.CodeInvalidAuthorization,
				fmt.Sprintf("no allowing auth_hba_file entry for host %q, user %q, database %q, %s", host, c.user, c.database, tlsWord(isTLS)))
		}
		return protocol.NewFatal(protocol.CodeInvalidAuthorization, fmt.Sprintf("login rejected for user %q", c.user))
	case AuthPassword:
		if !isTLS && !c.srv.conf().AuthPlainWithoutTLS {
			c.log.Warn("login refused: cleartext password without TLS")
			return protocol.NewFatal(protocol.CodeInvalidAuthorization,
				"password authentication needs a TLS connection (or auth_plain_without_tls)")
		}
		reason, err = c.authPassword(ctx)
	case AuthMD5:
		reason, err = c.authMD5(ctx)
	case AuthSCRAM:
		reason, err = c.authSCRAM(ctx, "")
	default:
		return protocol.NewFatal(protocol.CodeInternalError, "unknown auth method "+method)
	}
	if err != nil {
		return err
	}
	if reason != "" {
		if a.NoCredentials() {
			reason += " (cmpool holds no password for any user: see the error at startup)"
		}
		a.Failed(host)
		c.log.Warn("login failed", "method", method, "reason", reason)
		return auth.ErrLoginFailed(c.user)
	}
	c.log.Debug("login", "method", method, "tls", isTLS)
	ok, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	_, err = c.w.Write(ok)
	return err
}

func tlsWord(isTLS bool) string {
	if isTLS {
		return "TLS"
	}
	return "no encryption"
}

// lookupSecret finds the client user's secret, mapping an auth_query failure to a
// client error.
func (c *clientSession) lookupSecret(ctx context.Context) (string, bool, error) {
	return c.lookup(ctx, c.srv.authn().Secret)
}

// lookup runs find for the client's database and user, mapping an auth_query failure to
// a client error.
func (c *clientSession) lookup(ctx context.Context, find func(ctx context.Context, database, user string) (string, bool, error)) (string, bool, error) {
	s, found, err := find(ctx, c.database, c.user)
	if err != nil {
		c.log.Error("user lookup failed", "error", err)
		return "", false, protocol.NewFatal(protocol.CodeConnectionFailure, "could not look up the user's credentials (auth_query or the Authenticator failed)")
	}
	return s, found, nil
}

// authPassword runs the cleartext password exchange.
func (c *clientSession) authPassword(ctx context.Context) (string, error) {
	b, _ := (&pgproto3.AuthenticationCleartextPassword{}).Encode(nil)
	pw, err := c.authRoundTrip(b)
	if err != nil {
		return "", err
	}
	var pm pgproto3.PasswordMessage
	if err := pm.Decode(pw); err != nil {
		return "", protocol.NewFatal(protocol.CodeProtocolViolation, "invalid password message")
	}
	secret, found, err := c.lookupSecret(ctx)
	if err != nil {
		return "", err
	}
	if !found {
		return "unknown user", nil
	}
	switch {
	case protocol.IsMD5Secret(secret):
		if protocol.MD5Secret(c.user, pm.Password) != secret {
			return "wrong password", nil
		}
	case auth.IsScramSecret(secret):
		s, err := protocol.ParseScramSecret(secret)
		if err != nil {
			return "unusable SCRAM secret", nil
		}
		if !s.VerifyPassword(pm.Password) {
			return "wrong password", nil
		}
	default:
		if !hmac.Equal([]byte(secret), []byte(pm.Password)) {
			return "wrong password", nil
		}
		return "", nil
	}
	c.srv.authn().SetPassthrough(c.user, func(k *passthroughKeys) { k.Password = pm.Password })
	return "", nil
}

// authMD5 runs the md5 exchange, or SCRAM when the user's secret is a SCRAM one (as
// PostgreSQL does for md5 rules).
func (c *clientSession) authMD5(ctx context.Context) (string, error) {
	secret, found, err := c.lookupSecret(ctx)
	if err != nil {
		return "", err
	}
	if found && auth.IsScramSecret(secret) {
		return c.authSCRAM(ctx, secret)
	}
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	b, _ := (&pgproto3.AuthenticationMD5Password{Salt: salt}).Encode(nil)
	body, err := c.authRoundTrip(b)
	if err != nil {
		return "", err
	}
	var pm pgproto3.PasswordMessage
	if err := pm.Decode(body); err != nil {
		return "", protocol.NewFatal(protocol.CodeProtocolViolation, "invalid password message")
	}
	if !found {
		return "unknown user", nil
	}
	stored := protocol.IsMD5Secret(secret)
	if !stored {
		secret = protocol.MD5Secret(c.user, secret)
	}
	if !protocol.VerifyMD5Response(secret, salt, pm.Password) {
		return "wrong password", nil
	}
	if stored {
		c.srv.authn().SetPassthrough(c.user, func(k *passthroughKeys) { k.MD5 = secret })
	}
	return "", nil
}

// authSCRAM runs the SCRAM-SHA-256 exchange against secret, or against the user's
// secret when secret is empty. A user without a usable secret gets a mock exchange that
// fails at the end, like a wrong password.
func (c *clientSession) authSCRAM(ctx context.Context, secret string) (string, error) {
	a := c.srv.authn()
	found := secret != ""
	if !found {
		var err error
		if secret, found, err = c.lookupSecret(ctx); err != nil {
			return "", err
		}
	}
	var ss *protocol.ScramSecret
	fromStored := false
	reason := ""
	switch {
	case !found:
		reason = "unknown user"
	case auth.IsScramSecret(secret):
		var err error
		if ss, err = protocol.ParseScramSecret(secret); err != nil {
			reason = "unusable SCRAM secret"
		}
		fromStored = true
	case protocol.IsMD5Secret(secret):
		reason = "user has an md5 secret, which cannot check SCRAM"
	default:
		ss = protocol.NewScramSecret(secret, a.MockSalt(c.user), protocol.DefaultScramIterations)
	}
	srv := protocol.NewScramServer(ss, a.MockSalt(c.user))
	srv.ChannelBinding = c.tlsEndPoint
	b, _ := (&pgproto3.AuthenticationSASL{AuthMechanisms: protocol.ScramMechanisms(c.tlsEndPoint)}).Encode(nil)
	body, err := c.authRoundTrip(b)
	if err != nil {
		return "", err
	}
	var init pgproto3.SASLInitialResponse
	if err := init.Decode(body); err != nil {
		return "", protocol.NewFatal(protocol.CodeProtocolViolation, "invalid SASLInitialResponse")
	}
	serverFirst, err := srv.ClientFirst(init.AuthMechanism, init.Data)
	if err != nil {
		return "", protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
	}
	b, _ = (&pgproto3.AuthenticationSASLContinue{Data: serverFirst}).Encode(nil)
	body, err = c.authRoundTrip(b)
	if err != nil {
		return "", err
	}
	var resp pgproto3.SASLResponse
	if err := resp.Decode(body); err != nil {
		return "", protocol.NewFatal(protocol.CodeProtocolViolation, "invalid SASLResponse")
	}
	serverFinal, err := srv.ClientFinal(resp.Data)
	switch {
	case errors.Is(err, protocol.ErrScramProof):
		if reason == "" {
			reason = "wrong password"
		}
		return reason, nil
	case err != nil:
		return "", protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
	}
	b, _ = (&pgproto3.AuthenticationSASLFinal{Data: serverFinal}).Encode(nil)
	if _, err := c.w.Write(b); err != nil {
		return "", err
	}
	if fromStored {
		a.SetPassthrough(c.user, func(k *passthroughKeys) {
			k.ClientKey, k.ServerKey, k.Salt, k.Iterations = srv.ClientKey(), ss.ServerKey, ss.Salt, ss.Iterations
		})
	}
	return "", nil
}

// authRoundTrip sends an authentication request and returns the body of the client's
// answer, which must be a 'p' message of bounded size.
func (c *clientSession) authRoundTrip(req []byte) ([]byte, error) {
	if _, err := c.w.Write(req); err != nil {
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	fr, err := c.fr.Next()
	if err != nil {
		if isTimeout(err) {
			return nil, protocol.NewFatal(protocol.CodeProtocolViolation, "client_login_timeout: login not completed in time")
		}
		if errors.Is(err, io.EOF) || isNormalClose(err) {
			return nil, err
		}
		return nil, protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
	}
	if fr.Type == 'X' {
		return nil, io.EOF
	}
	if fr.Type != 'p' {
		return nil, protocol.NewFatal(protocol.CodeProtocolViolation,
			fmt.Sprintf("expected password response, got message type %q", fr.Type))
	}
	if fr.BodyLen > auth.MaxMessage {
		return nil, protocol.NewFatal(protocol.CodeProtocolViolation, "authentication message too long")
	}
	body, err := c.fr.Body()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), body...), nil
}

// authTrust admits the client without a password when no list of users is configured,
// else only users on the list (PgBouncer's rule); anyone else fails like a wrong password.
func (c *clientSession) authTrust(ctx context.Context) (string, error) {
	a := c.srv.authn()
	if !a.HasUserList() {
		return "", nil
	}
	if _, ok := c.srv.conf().Users[c.user]; ok {
		return "", nil
	}
	_, found, err := c.lookup(ctx, a.ListedSecret)
	if err != nil {
		return "", err
	}
	if !found {
		return "trust: user not listed", nil
	}
	return "", nil
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
		c.r = newClientReader(t)
		c.fr = protocol.NewFrameReader(c.r, c.srv.conf().MaxPacketSize)
	} else {
		c.r.Reset(t)
	}
	c.w.Reset(t)
	c.tlsConn = t
	c.tlsEndPoint = auth.EndPoint(tc)
	return nil
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
