// Package auth logs clients in to cmpool: the methods (SCRAM-SHA-256, md5, cleartext
// password, trust, reject, an hba file), the secrets they check (Users, the auth file, a
// SecretSource, auth_query, the password cmpool holds), the failed-login throttle, and
// client TLS.
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/singleflight"

	"github.com/cmlite/cmpool/protocol"
)

// Authenticator checks client logins. It is shared by every client of a Server; a
// reload replaces it (see CarryOver). The fields above failures are set by New and never
// change.
type Authenticator struct {
	cfg         *Options
	log         *slog.Logger
	fileSecrets map[string]string // from the auth file, every kind
	hba         []hbaRule
	target      func(database string) (*pgconn.Config, error) // see Options.Target
	mockKey     [32]byte                                      // derives stable fake salts for unknown users

	// noCredentials is set when no client can log in: cmpool holds no secret for anyone
	// and no rule is trust (see checkCredentials).
	noCredentials bool

	failures atomic.Int64 // wrong password or unknown user
	refusals atomic.Int64 // refused by a rule
	inflight singleflight.Group
	// mu guards cache, fails and passthrough. It is held only to read or change them,
	// never across auth_query or a client's answer.
	mu          sync.Mutex
	cache       map[string]cachedSecret
	fails       map[string]*failWindow
	passthrough map[string]*Passthrough
}

// New makes an Authenticator; it reads the hba file, and logs an error when no client
// can log in.
func New(opts Options) (*Authenticator, error) {
	a := &Authenticator{
		cfg:         &opts,
		target:      opts.Target,
		log:         opts.Logger,
		fileSecrets: opts.FileSecrets,
		cache:       make(map[string]cachedSecret),
		fails:       make(map[string]*failWindow),
		passthrough: make(map[string]*Passthrough),
	}
	_, _ = rand.Read(a.mockKey[:])
	if opts.HBAFile != "" {
		rules, err := readHBAFile(opts.HBAFile)
		if err != nil {
			return nil, err
		}
		a.hba = rules
	}
	a.checkCredentials()
	return a, nil
}

// Target returns Options.Target, for the Authenticator that replaces this one.
func (a *Authenticator) Target() func(database string) (*pgconn.Config, error) {
	return a.target
}

// Failures counts logins that failed: a wrong password or an unknown user.
func (a *Authenticator) Failures() int64 { return a.failures.Load() }

// Refusals counts logins a rule refused.
func (a *Authenticator) Refusals() int64 { return a.refusals.Load() }

// method returns the auth method for a client: the hba file's, or the user's, database's
// or global auth_type.
func (a *Authenticator) method(database, user string, addr net.Addr, isTLS bool) string {
	if a.cfg.Method == MethodHBA {
		return matchHBA(a.hba, database, user, addr, isTLS)
	}
	if m := a.cfg.Users[user].Method; m != "" {
		return m
	}
	if m := a.cfg.Databases[database].Method; m != "" {
		return m
	}
	return a.cfg.Method
}

// mockSalt is a fake salt for a user without a SCRAM secret, stable across attempts so
// that a client cannot tell unknown users from known ones.
func (a *Authenticator) mockSalt(user string) []byte {
	h := hmac.New(sha256.New, a.mockKey[:])
	h.Write([]byte(user))
	return h.Sum(nil)[:16]
}

// hostOf returns the IP of a client address, or "local" for in-process and Unix clients.
func hostOf(addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return "local"
}

// errLoginFailed is what a client sees for a wrong password and for an unknown user alike.
func errLoginFailed(user string) *protocol.Error {
	return protocol.NewFatal(protocol.CodeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", user))
}

// CarryOver takes what old learnt at run time into an Authenticator replacing it at a
// reload: the counters, the failed-login windows and the keys clients proved for
// pass-through (secrets looked up by auth_query are looked up again).
func (a *Authenticator) CarryOver(old *Authenticator) {
	a.failures.Store(old.failures.Load())
	a.refusals.Store(old.refusals.Load())
	old.mu.Lock()
	defer old.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	for host, w := range old.fails {
		cp := *w
		a.fails[host] = &cp
	}
	for user, k := range old.passthrough {
		cp := *k
		a.passthrough[user] = &cp
	}
}

// count counts a login's outcome for Failures and Refusals.
func (a *Authenticator) count(err error) {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case protocol.CodeInvalidPassword:
			a.failures.Add(1)
		case protocol.CodeInvalidAuthorization:
			a.refusals.Add(1)
		}
	}
}
