// Package auth logs clients in to cmpool: the methods (SCRAM-SHA-256, md5, cleartext
// password, trust, reject, an hba file), the secrets they check (Users, the auth file, a
// SecretSource, auth_query, the password cmpool holds), the failed-login throttle, and
// client TLS.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/singleflight"

	"github.com/cmlite/cmpool/protocol"
)

// Client authentication methods (auth_type and the hba file's method column).
const (
	MethodSCRAM    = "scram-sha-256"
	MethodMD5      = "md5"
	MethodPassword = "password"
	MethodTrust    = "trust"
	MethodReject   = "reject"
	MethodHBA      = "hba"
)

const (
	// failureWindow is the window AuthFailureLimit counts failed logins in.
	failureWindow = time.Minute
	// MaxMessage bounds a password, SASLInitialResponse or SASLResponse body.
	MaxMessage = 8 * 1024
)

// ParseMethod normalizes an auth method name; hbaOK allows "hba".
func ParseMethod(s string, hbaOK bool) (string, error) {
	switch s {
	case MethodSCRAM, MethodMD5, MethodTrust, MethodReject:
		return s, nil
	case MethodPassword, "plain":
		return MethodPassword, nil
	case MethodHBA:
		if hbaOK {
			return s, nil
		}
	}
	return "", fmt.Errorf("pool: unknown auth_type %q (want scram-sha-256, md5, password, trust, reject or hba)", s)
}

// Options configure an Authenticator. They are validated already: methods went through
// ParseMethod.
type Options struct {
	// Method is the method of clients that no User or Database entry gives one: a Method
	// constant, or MethodHBA to follow HBAFile.
	Method string
	// HBAFile is the hba file New reads; "" means none.
	HBAFile string
	// AuthFile is the auth file's path ("" means none) and FileSecrets its secrets, every
	// kind (see ReadAuthFile).
	AuthFile    string
	FileSecrets map[string]string
	// Users and Databases are the [users] and [databases] entries; nil means none.
	Users     map[string]User
	Databases map[string]Database
	// Source looks up the secrets of users found neither in Users nor in the auth file,
	// before auth_query. Nil means none.
	Source SecretSource
	// AuthUser runs AuthQuery in AuthDBName (or a Database's AuthDBName) on the primary;
	// "" means auth_query is off.
	AuthUser, AuthQuery, AuthDBName string
	// CacheTTL is how long an auth_query answer is kept; negative means not at all.
	CacheTTL time.Duration
	// FailureLimit is how many failed logins an address may have within a minute before
	// its logins are refused; negative means no limit.
	FailureLimit int
	// PlainWithoutTLS allows the password method without TLS.
	PlainWithoutTLS bool
	// TLSMode is client_tls_sslmode (a TLS constant): require and stronger refuse clients
	// without TLS.
	TLSMode string
	// ConnectTimeout bounds auth_query's connection and query.
	ConnectTimeout time.Duration
	// Primary is the primary's URL, whose password lets its user log in by default.
	Primary string
	// Target returns the connection settings of a database name on the current primary
	// (a promotion changes them); "" is the primary URL itself. auth_query runs on
	// Target(AuthDBName).
	Target func(database string) (*pgconn.Config, error)
	// Logger receives the authenticator's own logs; nil means none.
	Logger *slog.Logger
}

// User is what a [users] entry says about logins.
type User struct {
	// Password is the user's secret: plain, md5 or SCRAM; "" means none.
	Password string
	// Method overrides Options.Method and Database.Method; "" means none.
	Method string
}

// Database is what a [databases] entry says about logins.
type Database struct {
	// Method overrides Options.Method; "" means none.
	Method string
	// AuthDBName overrides Options.AuthDBName; "" means none.
	AuthDBName string
	// User and Password are what cmpool logs in to the database's server with; URL is
	// the entry's server. "" means the primary URL's.
	User, Password, URL string
}

// SecretSource looks up a user's secret: plain, md5 or SCRAM.
type SecretSource interface {
	Lookup(ctx context.Context, user string) (secret string, found bool, err error)
}

// Passthrough is what a client's SCRAM exchange proved: enough to log in to a server
// that stores the same SCRAM secret, without the password.
type Passthrough struct {
	ClientKey, ServerKey []byte
	Salt                 []byte
	Iterations           int
	// MD5 is the user's stored md5 secret, after a client proved it: enough to answer a
	// server's md5 challenge.
	MD5 string
	// Password is the cleartext password a client logged in with (method password), for
	// a user whose stored secret is a hash.
	Password string
}

// Authenticator checks client logins. It is shared by every client of a Server.
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

	failures    atomic.Int64 // wrong password or unknown user
	refusals    atomic.Int64 // refused by a rule
	inflight    singleflight.Group
	mu          sync.Mutex // guards cache, fails and passthrough
	cache       map[string]cachedSecret
	fails       map[string]*failWindow
	passthrough map[string]*Passthrough
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

// authDBName is the database auth_query runs in for a client of database: its
// Databases entry's auth_dbname, else the global one; "" is the primary URL's database.
func (a *Authenticator) authDBName(database string) string {
	if d := a.cfg.Databases[database].AuthDBName; d != "" {
		return d
	}
	return a.cfg.AuthDBName
}

// queryConfig returns the connection settings of auth_user for auth_query in authDB (see
// authDBName) on the current primary.
func (a *Authenticator) queryConfig(authDB string) (*pgconn.Config, error) {
	base, err := a.target(authDB)
	if err != nil {
		return nil, fmt.Errorf("auth_dbname %q: %w", authDB, err)
	}
	qc := base.Copy()
	if qc.User != a.cfg.AuthUser {
		qc.Password = ""
	}
	qc.User = a.cfg.AuthUser
	if p, ok := a.PlainPassword(a.cfg.AuthUser); ok {
		qc.Password = p
	}
	qc.ConnectTimeout = a.cfg.ConnectTimeout
	return qc, nil
}

// PlainPassword returns a user's plain-text password from Users or the auth file.
func (a *Authenticator) PlainPassword(user string) (string, bool) {
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

// secret finds a user's secret: a listed one (see listedSecret), else the password cmpool
// holds for the user to log in to the database's server (see heldPassword).
func (a *Authenticator) secret(ctx context.Context, database, user string) (string, bool, error) {
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
// the SecretSource, then auth_query.
func (a *Authenticator) listedSecret(ctx context.Context, database, user string) (string, bool, error) {
	if s := a.cfg.Users[user].Password; s != "" {
		return s, true, nil
	}
	if s, ok := a.fileSecrets[user]; ok {
		return s, true, nil
	}
	if hook := a.cfg.Source; hook != nil {
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
	if a.cfg.CacheTTL > 0 {
		a.mu.Lock()
		if len(a.cache) > 100_000 {
			clear(a.cache)
		}
		a.cache[key] = cachedSecret{secret: secret, found: found, expires: now.Add(a.cfg.CacheTTL)}
		a.mu.Unlock()
	}
	return secret, found, nil
}

// query runs auth_query as auth_user on the primary (see queryConfig).
func (a *Authenticator) query(ctx context.Context, authDB, user string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ConnectTimeout)
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
func (a *Authenticator) throttled(host string) bool {
	if a.cfg.FailureLimit < 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.fails[host]
	return w != nil && time.Since(w.start) < failureWindow && w.n >= a.cfg.FailureLimit
}

// failed counts a failed login from host.
func (a *Authenticator) failed(host string) {
	if a.cfg.FailureLimit < 0 {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.fails[host]
	if w == nil || now.Sub(w.start) >= failureWindow {
		if len(a.fails) > 10_000 {
			for h, old := range a.fails {
				if now.Sub(old.start) >= failureWindow {
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
func (a *Authenticator) setPassthrough(user string, update func(k *Passthrough)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var k Passthrough
	if old := a.passthrough[user]; old != nil {
		k = *old
	}
	update(&k)
	a.passthrough[user] = &k
}

// PassthroughFor returns the keys a client of user proved, or nil.
func (a *Authenticator) PassthroughFor(user string) *Passthrough {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.passthrough[user]
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
