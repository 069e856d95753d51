package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/protocol"
)

// loginPassthrough opens a server connection and logs in with what a client proved: the
// SCRAM keys (SCRAM pass-through) or the md5 secret. pgconn can only log in with a
// password, so cmpool runs the startup itself here. It tries the configuration's host, then its fallbacks (as
// sslmode=prefer makes them), like pgconn.
func loginPassthrough(ctx context.Context, cfg *pgconn.Config, keys *auth.Passthrough) (*Conn, error) {
	type target struct {
		host string
		port uint16
		tls  *tls.Config
	}
	targets := []target{{cfg.Host, cfg.Port, cfg.TLSConfig}}
	for _, fb := range cfg.Fallbacks {
		targets = append(targets, target{fb.Host, fb.Port, fb.TLSConfig})
	}
	var errs []error
	for _, t := range targets {
		sc, err := loginPassthroughAt(ctx, cfg, t.host, t.port, t.tls, keys)
		if err == nil {
			return sc, nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return nil, err // the server answered: other targets would answer the same
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connect to %s: %w", cfg.Host, errors.Join(errs...))
}

func loginPassthroughAt(ctx context.Context, cfg *pgconn.Config, host string, port uint16, tc *tls.Config, keys *auth.Passthrough) (_ *Conn, err error) {
	network, addr := pgconn.NetworkAddress(host, port)
	dial := cfg.DialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var binding []byte // the server certificate's tls-server-end-point data
	conn, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = conn.Close()
		}
	}()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if tc != nil {
		req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
		if _, err := conn.Write(req); err != nil {
			return nil, err
		}
		var b [1]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			return nil, err
		}
		if b[0] != 'S' {
			return nil, errors.New("server refused TLS")
		}
		t := tls.Client(conn, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		conn = t
		if certs := t.ConnectionState().PeerCertificates; len(certs) > 0 {
			binding, _ = protocol.TLSServerEndPoint(certs[0])
		}
	}
	fe := pgproto3.NewFrontend(conn, conn)
	params := map[string]string{"user": cfg.User, "database": cfg.Database}
	for k, v := range cfg.RuntimeParams {
		params[k] = v
	}
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params})
	if err := fe.Flush(); err != nil {
		return nil, err
	}
	sc := &Conn{Defaults: make(map[string]string), Set: make(map[string]string), CreatedAt: time.Now()}
	scram := &protocol.ScramClient{ClientKey: keys.ClientKey, ServerKey: keys.ServerKey, Salt: keys.Salt, Iterations: keys.Iterations}
	for {
		msg, err := fe.Receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk:
		case *pgproto3.AuthenticationSASL:
			if keys.ClientKey == nil {
				return nil, noSecretError(cfg.User, "scram-sha-256")
			}
			if binding != nil && slices.Contains(m.AuthMechanisms, protocol.ScramPlusMechanism) {
				scram.ChannelBinding = binding
			} else if !slices.Contains(m.AuthMechanisms, protocol.ScramMechanism) {
				return nil, fmt.Errorf("server offers SASL %v, not %s", m.AuthMechanisms, protocol.ScramMechanism)
			}
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: scram.Mechanism(), Data: scram.First()})
			if err := fe.Flush(); err != nil {
				return nil, err
			}
		case *pgproto3.AuthenticationSASLContinue:
			final, err := scram.Final(m.Data)
			if err != nil {
				return nil, err
			}
			fe.Send(&pgproto3.SASLResponse{Data: final})
			if err := fe.Flush(); err != nil {
				return nil, err
			}
		case *pgproto3.AuthenticationSASLFinal:
			if err := scram.Verify(m.Data); err != nil {
				return nil, err
			}
		case *pgproto3.AuthenticationMD5Password:
			if keys.MD5 == "" {
				return nil, noSecretError(cfg.User, "md5")
			}
			// The answer is "md5" + md5(md5(password + user) + salt): the stored secret will do.
			fe.Send(&pgproto3.PasswordMessage{Password: protocol.MD5Secret(string(m.Salt[:]), keys.MD5[3:])})
			if err := fe.Flush(); err != nil {
				return nil, err
			}
		case *pgproto3.AuthenticationCleartextPassword:
			return nil, noSecretError(cfg.User, "password")
		case *pgproto3.ParameterStatus:
			sc.Defaults[m.Name] = m.Value
		case *pgproto3.BackendKeyData:
			sc.PID = m.ProcessID
			sc.secretKey = append([]byte(nil), m.SecretKey...)
		case *pgproto3.ErrorResponse:
			return nil, pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			sc.TxStatus = m.TxStatus
			sc.takeOver(conn)
			return sc, nil
		case *pgproto3.NoticeResponse:
		default:
			return nil, fmt.Errorf("unexpected %T during server login", msg)
		}
	}
}

// noSecretError is the error for a server that wants a method cmpool has nothing for.
func noSecretError(user, method string) error {
	return &pgconn.PgError{Severity: "FATAL", Code: protocol.CodeInvalidPassword,
		Message: fmt.Sprintf("server asks user %q for %s authentication, but cmpool has no password for it, only what the client proved", user, method)}
}
