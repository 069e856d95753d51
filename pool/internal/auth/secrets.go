package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/protocol"
)

type cachedSecret struct {
	secret  string
	found   bool
	expires time.Time
}

// authDBName is the database auth_query runs in for a client of database: its
// Databases entry's auth_dbname, else the global one; "" is the primary URL's database.
func (a *Authenticator) authDBName(database string) string {
	if d := a.cfg.Databases[database].AuthDBName; d != "" {
		return d
	}
	return a.cfg.AuthDBName
}

// authUser is the user that runs auth_query for a client of database: its Databases
// entry's auth_user, else the global one; "" is none (auth_query is off).
func (a *Authenticator) authUser(database string) string {
	if u := a.cfg.Databases[database].AuthUser; u != "" {
		return u
	}
	return a.cfg.AuthUser
}

// queryConfig returns the connection settings of authUser for auth_query in authDB (see
// authDBName) on the current primary.
func (a *Authenticator) queryConfig(authDB, authUser string) (*pgconn.Config, error) {
	base, err := a.target(authDB)
	if err != nil {
		return nil, fmt.Errorf("auth_dbname %q: %w", authDB, err)
	}
	qc := base.Copy()
	if qc.User != authUser {
		qc.Password = ""
	}
	qc.User = authUser
	if p, ok := a.PlainPassword(authUser); ok {
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
	authUser := a.authUser(database)
	if authUser == "" {
		return "", false, nil
	}
	authDB := a.authDBName(database)
	// Secrets are kept per database auth_query runs in, and per user that runs it.
	key := authDB + "\x00" + authUser + "\x00" + user
	now := time.Now()
	a.mu.Lock()
	e, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.secret, e.found, nil
	}
	// Logins of one user that miss the cache together share one query.
	v, err, _ := a.inflight.Do(key, func() (any, error) {
		secret, found, err := a.query(context.WithoutCancel(ctx), authDB, authUser, user)
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

// query runs auth_query as authUser on the primary (see queryConfig).
func (a *Authenticator) query(ctx context.Context, authDB, authUser, user string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ConnectTimeout)
	defer cancel()
	qc, err := a.queryConfig(authDB, authUser)
	if err != nil {
		return "", false, fmt.Errorf("auth_query: %w", err)
	}
	pc, err := pgconn.ConnectConfig(ctx, qc)
	if err != nil {
		return "", false, fmt.Errorf("auth_query: connect as %s: %w", authUser, err)
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
