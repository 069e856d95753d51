package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
)

// Exchange is the client's end of a login: Login sends it Authentication messages and
// reads its answers through it, so that a login runs without a socket in tests.
type Exchange interface {
	// Send queues msg, an Authentication message, for the client.
	Send(msg []byte) error
	// Receive sends what Send queued, then returns the type of the client's next message
	// and, for a 'p' message (PasswordMessage, SASLInitialResponse, SASLResponse), its
	// body, which stays Login's. It need not read a 'p' body of more than MaxMessage
	// bytes: it returns ErrMessageTooLong instead.
	Receive() (typ byte, body []byte, err error)
}

// MaxMessage bounds a password, SASLInitialResponse or SASLResponse body.
const MaxMessage = 8 * 1024

// ErrMessageTooLong is an Exchange's answer to a 'p' message over MaxMessage bytes.
var ErrMessageTooLong = errors.New("authentication message too long")

// Client is who logs in.
type Client struct {
	Database, User string
	// Addr is the client's address: a *net.TCPAddr, or another kind for in-process and
	// Unix clients (the hba file's "local").
	Addr net.Addr
	// TLS is the connection's TLS state; nil means no TLS.
	TLS *tls.ConnectionState
	// EndPoint is the tls-server-end-point data of cmpool's certificate (see EndPoint);
	// nil means SCRAM-SHA-256-PLUS is not offered.
	EndPoint []byte
	// Log receives the login's logs, which never hold secrets; nil means none.
	Log *slog.Logger
}

// login is one client's login in progress.
type login struct {
	a    *Authenticator
	ex   Exchange
	who  *Client
	log  *slog.Logger
	host string // see hostOf
}

// Login refuses a client without the TLS the settings require, logs it in with the method
// the rules choose, and sends AuthenticationOk (queued: the caller flushes it with what
// follows). A refusal is a *protocol.Error with SQLSTATE 28000, a wrong password or an
// unknown user one with 28P01 (counted per address, see FailureLimit); errors of the
// Exchange come back as they are.
func (a *Authenticator) Login(ctx context.Context, ex Exchange, who Client) error {
	l := &login{a: a, ex: ex, who: &who, log: who.Log, host: hostOf(who.Addr)}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	err := l.run(ctx)
	a.count(err)
	return err
}

func (l *login) run(ctx context.Context) error {
	if err := l.checkTLSRequired(); err != nil {
		return err
	}
	a, who := l.a, l.who
	isTLS := who.TLS != nil
	method := a.method(who.Database, who.User, who.Addr, isTLS)
	if method != MethodTrust && a.throttled(l.host) {
		l.log.Warn("login refused: too many failed logins", "method", method)
		return protocol.NewFatal(protocol.CodeInvalidAuthorization, "too many failed logins from this address; try again later")
	}
	var reason string
	var err error
	switch method {
	case MethodTrust:
		reason, err = l.trust(ctx)
	case MethodReject:
		l.log.Warn("login rejected by auth rules", "tls", isTLS)
		if a.cfg.Method == MethodHBA {
			return protocol.NewFatal(protocol.CodeInvalidAuthorization,
				fmt.Sprintf("no allowing auth_hba_file entry for host %q, user %q, database %q, %s", l.host, who.User, who.Database, tlsWord(isTLS)))
		}
		return protocol.NewFatal(protocol.CodeInvalidAuthorization, fmt.Sprintf("login rejected for user %q", who.User))
	case MethodPassword:
		if !isTLS && !a.cfg.PlainWithoutTLS {
			l.log.Warn("login refused: cleartext password without TLS")
			return protocol.NewFatal(protocol.CodeInvalidAuthorization,
				"password authentication needs a TLS connection (or auth_plain_without_tls)")
		}
		reason, err = l.password(ctx)
	case MethodMD5:
		reason, err = l.md5(ctx)
	case MethodSCRAM:
		reason, err = l.scram(ctx, "")
	default:
		return protocol.NewFatal(protocol.CodeInternalError, "unknown auth method "+method)
	}
	if err != nil {
		return err
	}
	if reason != "" {
		if a.noCredentials {
			reason += " (cmpool holds no password for any user: see the error at startup)"
		}
		a.failed(l.host)
		l.log.Warn("login failed", "method", method, "reason", reason)
		return errLoginFailed(who.User)
	}
	l.log.Debug("login", "method", method, "tls", isTLS)
	ok, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	return l.ex.Send(ok)
}

func tlsWord(isTLS bool) string {
	if isTLS {
		return "TLS"
	}
	return "no encryption"
}

// checkTLSRequired refuses a client without TLS when client_tls_sslmode wants it, and
// checks the certificate's common name for verify-full.
func (l *login) checkTLSRequired() error {
	mode := l.a.cfg.TLSMode
	switch mode {
	case TLSRequire, TLSVerifyCA, TLSVerifyFull:
	default:
		return nil
	}
	if l.who.TLS == nil {
		l.log.Warn("login refused: no TLS")
		return protocol.NewFatal(protocol.CodeInvalidAuthorization,
			fmt.Sprintf("SSL required: client_tls_sslmode is %s; connect with sslmode=require or stronger", mode))
	}
	if mode == TLSVerifyFull {
		certs := l.who.TLS.PeerCertificates
		if len(certs) == 0 || certs[0].Subject.CommonName != l.who.User {
			l.log.Warn("login refused: certificate does not match the user")
			return protocol.NewFatal(protocol.CodeInvalidAuthorization,
				fmt.Sprintf("certificate authentication failed for user %q: common name does not match", l.who.User))
		}
	}
	return nil
}

// roundTrip sends an authentication request and returns the body of the client's
// answer, which must be a 'p' message of bounded size.
func (l *login) roundTrip(req []byte) ([]byte, error) {
	if err := l.ex.Send(req); err != nil {
		return nil, err
	}
	typ, body, err := l.ex.Receive()
	switch {
	case errors.Is(err, ErrMessageTooLong):
		return nil, protocol.NewFatal(protocol.CodeProtocolViolation, "authentication message too long")
	case err != nil:
		return nil, err
	case typ == 'X':
		return nil, io.EOF
	case typ != 'p':
		return nil, protocol.NewFatal(protocol.CodeProtocolViolation,
			fmt.Sprintf("expected password response, got message type %q", typ))
	case len(body) > MaxMessage:
		return nil, protocol.NewFatal(protocol.CodeProtocolViolation, "authentication message too long")
	}
	return body, nil
}

// lookup runs find for the client's database and user, mapping an auth_query failure to
// a client error.
func (l *login) lookup(ctx context.Context, find func(ctx context.Context, database, user string) (string, bool, error)) (string, bool, error) {
	s, found, err := find(ctx, l.who.Database, l.who.User)
	if err != nil {
		l.log.Error("user lookup failed", "error", err)
		return "", false, protocol.NewFatal(protocol.CodeConnectionFailure, "could not look up the user's credentials (auth_query or the Authenticator failed)")
	}
	return s, found, nil
}
