package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
)

// The exchanges return a reason when the client failed to prove who it is (logged, never
// shown: the client sees errLoginFailed), and an error when the login cannot go on.

// password runs the cleartext password exchange.
func (l *login) password(ctx context.Context) (string, error) {
	b, _ := (&pgproto3.AuthenticationCleartextPassword{}).Encode(nil)
	pw, err := l.roundTrip(b)
	if err != nil {
		return "", err
	}
	var pm pgproto3.PasswordMessage
	if err := pm.Decode(pw); err != nil {
		return "", protocol.NewFatal(protocol.CodeProtocolViolation, "invalid password message")
	}
	secret, found, err := l.lookup(ctx, l.a.secret)
	if err != nil {
		return "", err
	}
	if !found {
		return "unknown user", nil
	}
	switch {
	case protocol.IsMD5Secret(secret):
		if protocol.MD5Secret(l.who.User, pm.Password) != secret {
			return "wrong password", nil
		}
	case isScramSecret(secret):
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
	l.a.setPassthrough(l.who.User, func(k *Passthrough) { k.Password = pm.Password })
	return "", nil
}

// md5 runs the md5 exchange, or SCRAM when the user's secret is a SCRAM one (as
// PostgreSQL does for md5 rules).
func (l *login) md5(ctx context.Context) (string, error) {
	secret, found, err := l.lookup(ctx, l.a.secret)
	if err != nil {
		return "", err
	}
	if found && isScramSecret(secret) {
		return l.scram(ctx, secret)
	}
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	b, _ := (&pgproto3.AuthenticationMD5Password{Salt: salt}).Encode(nil)
	body, err := l.roundTrip(b)
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
		secret = protocol.MD5Secret(l.who.User, secret)
	}
	if !protocol.VerifyMD5Response(secret, salt, pm.Password) {
		return "wrong password", nil
	}
	if stored {
		l.a.setPassthrough(l.who.User, func(k *Passthrough) { k.MD5 = secret })
	}
	return "", nil
}

// scram runs the SCRAM-SHA-256 exchange against secret, or against the user's
// secret when secret is empty. A user without a usable secret gets a mock exchange that
// fails at the end, like a wrong password.
func (l *login) scram(ctx context.Context, secret string) (string, error) {
	a := l.a
	found := secret != ""
	if !found {
		var err error
		if secret, found, err = l.lookup(ctx, l.a.secret); err != nil {
			return "", err
		}
	}
	var ss *protocol.ScramSecret
	fromStored := false
	reason := ""
	switch {
	case !found:
		reason = "unknown user"
	case isScramSecret(secret):
		var err error
		if ss, err = protocol.ParseScramSecret(secret); err != nil {
			reason = "unusable SCRAM secret"
		}
		fromStored = true
	case protocol.IsMD5Secret(secret):
		reason = "user has an md5 secret, which cannot check SCRAM"
	default:
		ss = protocol.NewScramSecret(secret, a.mockSalt(l.who.User), protocol.DefaultScramIterations)
	}
	srv := protocol.NewScramServer(ss, a.mockSalt(l.who.User))
	srv.ChannelBinding = l.who.EndPoint
	b, _ := (&pgproto3.AuthenticationSASL{AuthMechanisms: protocol.ScramMechanisms(l.who.EndPoint)}).Encode(nil)
	body, err := l.roundTrip(b)
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
	body, err = l.roundTrip(b)
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
	if err := l.ex.Send(b); err != nil {
		return "", err
	}
	if fromStored {
		a.setPassthrough(l.who.User, func(k *Passthrough) {
			k.ClientKey, k.ServerKey, k.Salt, k.Iterations = srv.ClientKey(), ss.ServerKey, ss.Salt, ss.Iterations
		})
	}
	return "", nil
}

// trust admits the client without a password when no list of users is configured,
// else only users on the list (PgBouncer's rule); anyone else fails like a wrong password.
func (l *login) trust(ctx context.Context) (string, error) {
	a := l.a
	if !a.hasUserList() {
		return "", nil
	}
	if _, ok := a.cfg.Users[l.who.User]; ok {
		return "", nil
	}
	_, found, err := l.lookup(ctx, a.listedSecret)
	if err != nil {
		return "", err
	}
	if !found {
		return "trust: user not listed", nil
	}
	return "", nil
}
