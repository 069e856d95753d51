package pool

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sync/singleflight"

	"github.com/cmlite/cmpool/protocol"
)

// Client authentication methods (Config.AuthType and the hba file's method column).
const (
	AuthSCRAM    = "scram-sha-256"
	AuthMD5      = "md5"
	AuthPassword = "password"
	AuthTrust    = "trust"
	AuthReject   = "reject"
	AuthHBA      = "hba"
)

// DefaultAuthQuery is PgBouncer's default auth_query: the user's secret from pg_authid,
// none when it has expired, and no row for roles that cannot log in.
const DefaultAuthQuery = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END " +
	"FROM pg_authid WHERE rolname = $1 AND rolcanlogin"

// Defaults for authentication settings.
const (
	DefaultAuthCacheTTL     = 60 * time.Second
	DefaultAuthFailureLimit = 10
	authFailureWindow       = time.Minute
	// maxAuthMessage bounds a password, SASLInitialResponse or SASLResponse body.
	maxAuthMessage = 8 * 1024
)

// parseAuthMethod normalizes an auth method name; hbaOK allows "hba".
func parseAuthMethod(s string, hbaOK bool) (string, error) {
	switch s {
	case AuthSCRAM, AuthMD5, AuthTrust, AuthReject:
		return s, nil
	case AuthPassword, "plain":
		return AuthPassword, nil
	case AuthHBA:
		if hbaOK {
			return s, nil
		}
	}
	return "", fmt.Errorf("pool: unknown auth_type %q (want scram-sha-256, md5, password, trust, reject or hba)", s)
}

// checkAuth validates and defaults the authentication and TLS settings.
func (c *Config) checkAuth() error {
	if c.AuthType == "" {
		// No silent trust: a client proves a password cmpool holds (see
		// authenticator.secret), and trust is only ever what the configuration says.
		c.AuthType = AuthSCRAM
	}
	var err error
	if c.AuthType, err = parseAuthMethod(c.AuthType, true); err != nil {
		return err
	}
	c.Databases = maps.Clone(c.Databases)
	c.Users = maps.Clone(c.Users)
	if c.AuthType == AuthHBA && c.AuthHBAFile == "" {
		return errors.New("pool: auth_type hba needs auth_hba_file")
	}
	for name, d := range c.Databases {
		if d.AuthType != "" {
			if d.AuthType, err = parseAuthMethod(d.AuthType, false); err != nil {
				return fmt.Errorf("pool: database %q: %w", name, err)
			}
			c.Databases[name] = d
		}
	}
	for name, u := range c.Users {
		if u.AuthType != "" {
			if u.AuthType, err = parseAuthMethod(u.AuthType, false); err != nil {
				return fmt.Errorf("pool: user %q: %w", name, err)
			}
			c.Users[name] = u
		}
	}
	if c.AuthUser != "" && c.AuthQuery == "" {
		c.AuthQuery = DefaultAuthQuery
	}
	if c.AuthCacheTTL == 0 {
		c.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if c.AuthFailureLimit == 0 {
		c.AuthFailureLimit = DefaultAuthFailureLimit
	}
	if err := c.checkClientTLS(); err != nil {
		return err
	}
	return c.checkServerTLS()
}

// passthroughKeys are what a client's SCRAM exchange proved: enough to log in to a
// server that stores the same SCRAM secret, without the password.
type passthroughKeys struct {
	clientKey, serverKey []byte
	salt                 []byte
	iterations           int
	// md5 is the user's stored md5 secret, after a client proved it: enough to answer a
	// server's md5 challenge.
	md5 string
	// password is the cleartext password a client logged in with (method password), for
	// a user whose stored secret is a hash.
	password string
}

// authenticator checks client logins. It is shared by every client of a Server.
type authenticator struct {
	cfg         *Config
	log         *slog.Logger
	fileSecrets map[string]string // from the auth file, every kind
	hba         []hbaRule
	// target returns the connection settings of a database name on the current primary
	// (a promotion changes them), as Server.databaseTargetLocked; "" is the primary URL
	// itself. auth_query runs on target(AuthDBName).
	target  func(database string) (*pgconn.Config, error)
	mockKey [32]byte // derives stable fake salts for unknown users

	// noCredentials is set when no client can log in: cmpool holds no secret for anyone
	// and no rule is trust (see checkCredentials).
	noCredentials bool

	failures    atomic.Int64 // wrong password or unknown user
	refusals    atomic.Int64 // refused by a rule
	inflight    singleflight.Group
	mu          sync.Mutex
	cache       map[string]cachedSecret
	fails       map[string]*failWindow
	passthrough map[string]*passthroughKeys
}

type cachedSecret struct {
	secret  string
	found   bool
	expires time.Time
}

type failWindow struct {
	start time.Time
	n     int
}

func newAuthenticator(cfg *Config, target func(string) (*pgconn.Config, error), fileSecrets map[string]string) (*authenticator, error) {
	a := &authenticator{
		cfg:         cfg,
		target:      target,
		log:         cfg.Logger,
		fileSecrets: fileSecrets,
		cache:       make(map[string]cachedSecret),
		fails:       make(map[string]*failWindow),
		passthrough: make(map[string]*passthroughKeys),
	}
	_, _ = rand.Read(a.mockKey[:])
	if cfg.AuthHBAFile != "" {
		rules, err := readHBAFile(cfg.AuthHBAFile)
		if err != nil {
			return nil, err
		}
		a.hba = rules
	}
	a.checkCredentials()
	return a, nil
}

// authDBName is the database auth_query runs in for a client of database: its
// Databases entry's auth_dbname, else the global one; "" is the primary URL's database.
func (a *authenticator) authDBName(database string) string {
	if d := a.cfg.Databases[database].AuthDBName; d != "" {
		return d
	}
	return a.cfg.AuthDBName
}

// queryConfig returns the connection settings of auth_user for auth_query in authDB (see
// authDBName) on the current primary.
func (a *authenticator) queryConfig(authDB string) (*pgconn.Config, error) {
	base, err := a.target(authDB)
	if err != nil {
		return nil, fmt.Errorf("auth_dbname %q: %w", authDB, err)
	}
	qc := base.Copy()
	if qc.User != a.cfg.AuthUser {
		qc.Password = ""
	}
	qc.User = a.cfg.AuthUser
	if p, ok := a.plainPassword(a.cfg.AuthUser); ok {
		qc.Password = p
	}
	qc.ConnectTimeout = a.cfg.ServerConnectTimeout
	return qc, nil
}

// plainPassword returns a user's plain-text password from Users or the auth file.
func (a *authenticator) plainPassword(user string) (string, bool) {
	for _, s := range []string{a.cfg.Users[user].Password, a.fileSecrets[user]} {
		if s != "" && !protocol.IsMD5Secret(s) && !isScramSecret(s) {
			return s, true
		}
	}
	return "", false
}

func isScramSecret(s string) bool { return len(s) > 14 && s[:14] == "SCRAM-SHA-256$" }

// method returns the auth method for a client: the hba file's, or the user's, database's
// or global auth_type.
func (a *authenticator) method(database, user string, addr net.Addr, isTLS bool) string {
	if a.cfg.AuthType == AuthHBA {
		return matchHBA(a.hba, database, user, addr, isTLS)
	}
	if m := a.cfg.Users[user].AuthType; m != "" {
		return m
	}
	if m := a.cfg.Databases[database].AuthType; m != "" {
		return m
	}
	return a.cfg.AuthType
}

// secret finds a user's secret: a listed one (see listedSecret), else the password cmpool
// holds for the user to log in to the database's server (see heldPassword).
func (a *authenticator) secret(ctx context.Context, database, user string) (string, bool, error) {
	s, found, err := a.listedSecret(ctx, database, user)
	if err != nil || found {
		return s, found, err
	}
	if p := a.heldPassword(database, user); p != "" {
		return p, true, nil
	}
	return "", false, nil
}

// listedSecret finds a user's secret in a list of users: Users, then the auth file, then
// Config.Authenticator, then auth_query.
func (a *authenticator) listedSecret(ctx context.Context, database, user string) (string, bool, error) {
	if s := a.cfg.Users[user].Password; s != "" {
		return s, true, nil
	}
	if s, ok := a.fileSecrets[user]; ok {
		return s, true, nil
	}
	if hook := a.cfg.Authenticator; hook != nil {
		s, found, err := hook.Lookup(ctx, user)
		if err != nil || found {
			return s, found, err
		}
	}
	if a.cfg.AuthUser == "" {
		return "", false, nil
	}
	authDB := a.authDBName(database)
	key := authDB + "\x00" + user // secrets are kept per database auth_query runs in
	now := time.Now()
	a.mu.Lock()
	e, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.secret, e.found, nil
	}
	// Logins of one user that miss the cache together share one query.
	v, err, _ := a.inflight.Do(key, func() (any, error) {
		secret, found, err := a.query(context.WithoutCancel(ctx), authDB, user)
		return cachedSecret{secret: secret, found: found}, err
	})
	if err != nil {
		return "", false, err
	}
	secret, found := v.(cachedSecret).secret, v.(cachedSecret).found
	if a.cfg.AuthCacheTTL > 0 {
		a.mu.Lock()
		if len(a.cache) > 100_000 {
			clear(a.cache)
		}
		a.cache[key] = cachedSecret{secret: secret, found: found, expires: now.Add(a.cfg.AuthCacheTTL)}
		a.mu.Unlock()
	}
	return secret, found, nil
}

// query runs auth_query as auth_user on the primary (see queryConfig).
func (a *authenticator) query(ctx context.Context, authDB, user string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ServerConnectTimeout)
	defer cancel()
	qc, err := a.queryConfig(authDB)
	if err != nil {
		return "", false, fmt.Errorf("auth_query: %w", err)
	}
	pc, err := pgconn.ConnectConfig(ctx, qc)
	if err != nil {
		return "", false, fmt.Errorf("auth_query: connect as %s: %w", a.cfg.AuthUser, err)
	}
	defer pc.Close(context.Background())
	res := pc.ExecParams(ctx, a.cfg.AuthQuery, [][]byte{[]byte(user)}, nil, nil, nil).Read()
	if res.Err != nil {
		return "", false, fmt.Errorf("auth_query: %w", res.Err)
	}
	if len(res.Rows) == 0 {
		return "", false, nil
	}
	row := res.Rows[0]
	if len(row) < 2 || row[1] == nil {
		return "", false, nil
	}
	return string(row[1]), true, nil
}

// throttled reports whether addr has had too many failed logins in the current window.
func (a *authenticator) throttled(host string) bool {
	if a.cfg.AuthFailureLimit < 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.fails[host]
	return w != nil && time.Since(w.start) < authFailureWindow && w.n >= a.cfg.AuthFailureLimit
}

// failed counts a failed login from host.
func (a *authenticator) failed(host string) {
	if a.cfg.AuthFailureLimit < 0 {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.fails[host]
	if w == nil || now.Sub(w.start) >= authFailureWindow {
		if len(a.fails) > 10_000 {
			for h, old := range a.fails {
				if now.Sub(old.start) >= authFailureWindow {
					delete(a.fails, h)
				}
			}
		}
		w = &failWindow{start: now}
		a.fails[host] = w
	}
	w.n++
}

// setPassthrough records what a client of user proved; update changes a copy of the
// previous record.
func (a *authenticator) setPassthrough(user string, update func(k *passthroughKeys)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var k passthroughKeys
	if old := a.passthrough[user]; old != nil {
		k = *old
	}
	update(&k)
	a.passthrough[user] = &k
}

// passthroughFor returns the keys a client of user proved, or nil.
func (a *authenticator) passthroughFor(user string) *passthroughKeys {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.passthrough[user]
}

// mockSalt is a fake salt for a user without a SCRAM secret, stable across attempts so
// that a client cannot tell unknown users from known ones.
func (a *authenticator) mockSalt(user string) []byte {
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

// authenticate refuses a client without the TLS its settings require, logs it in with the
// method its rules choose, and sends AuthenticationOk. Failures are logged without
// secrets and counted per address.
func (c *clientSession) authenticate(ctx context.Context) error {
	err := c.authenticateWith(ctx)
	var pe *protocol.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case protocol.CodeInvalidPassword:
			c.srv.authn().failures.Add(1)
		case protocol.CodeInvalidAuthorization:
			c.srv.authn().refusals.Add(1)
		}
	}
	return err
}

func (c *clientSession) authenticateWith(ctx context.Context) error {
	if err := c.checkTLSRequired(); err != nil {
		return err
	}
	a := c.srv.authn()
	isTLS := c.tlsConn != nil
	addr := c.conn.RemoteAddr()
	host := hostOf(addr)
	method := a.method(c.database, c.user, addr, isTLS)
	if method != AuthTrust && a.throttled(host) {
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
		if a.cfg.AuthType == AuthHBA {
			return protocol.NewFatal(protocol.CodeInvalidAuthorization,
				fmt.Sprintf("no allowing auth_hba_file entry for host %q, user %q, database %q, %s", host, c.user, c.database, tlsWord(isTLS)))
		}
		return protocol.NewFatal(protocol.CodeInvalidAuthorization, fmt.Sprintf("login rejected for user %q", c.user))
	case AuthPassword:
		if !isTLS && !a.cfg.AuthPlainWithoutTLS {
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
		if a.noCredentials {
			reason += " (cmpool holds no password for any user: see the error at startup)"
		}
		a.failed(host)
		c.log.Warn("login failed", "method", method, "reason", reason)
		return errLoginFailed(c.user)
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
	return c.lookup(ctx, c.srv.authn().secret)
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
	c.srv.authn().setPassthrough(c.user, func(k *passthroughKeys) { k.password = pm.Password })
	return "", nil
}

// authMD5 runs the md5 exchange, or SCRAM when the user's secret is a SCRAM one (as
// PostgreSQL does for md5 rules).
func (c *clientSession) authMD5(ctx context.Context) (string, error) {
	secret, found, err := c.lookupSecret(ctx)
	if err != nil {
		return "", err
	}
	if found && isScramSecret(secret) {
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
		c.srv.authn().setPassthrough(c.user, func(k *passthroughKeys) { k.md5 = secret })
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
	case isScramSecret(secret):
		var err error
		if ss, err = protocol.ParseScramSecret(secret); err != nil {
			reason = "unusable SCRAM secret"
		}
		fromStored = true
	case protocol.IsMD5Secret(secret):
		reason = "user has an md5 secret, which cannot check SCRAM"
	default:
		ss = protocol.NewScramSecret(secret, a.mockSalt(c.user), protocol.DefaultScramIterations)
	}
	srv := protocol.NewScramServer(ss, a.mockSalt(c.user))
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
		a.setPassthrough(c.user, func(k *passthroughKeys) {
			k.clientKey, k.serverKey, k.salt, k.iterations = srv.ClientKey(), ss.ServerKey, ss.Salt, ss.Iterations
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
	if fr.BodyLen > maxAuthMessage {
		return nil, protocol.NewFatal(protocol.CodeProtocolViolation, "authentication message too long")
	}
	body, err := c.fr.Body()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), body...), nil
}

// carryOver takes what old learnt at run time into a authenticator replacing it at a
// reload: the counters, the failed-login windows and the keys clients proved for
// pass-through (secrets looked up by auth_query are looked up again).
func (a *authenticator) carryOver(old *authenticator) {
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
