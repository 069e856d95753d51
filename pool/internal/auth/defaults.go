package auth

import (
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// The default, and trust. With no auth settings a client proves the password cmpool
// itself holds for its user (heldPassword): there is no silent trust. trust is only what
// the configuration says, and then admits only listed users when there is a list, as in
// PgBouncer. A configuration under which nobody can log in, or that serves trust where
// other hosts can reach it, is logged.

// hasUserList reports whether users are listed somewhere: the auth file, [users], the
// SecretSource or auth_query. With a list, trust admits only the users on it (as in
// PgBouncer, where trust still needs the user in the auth file).
func (a *Authenticator) hasUserList() bool {
	c := a.cfg
	return c.AuthFile != "" || len(c.Users) > 0 || c.AuthUser != "" || c.Source != nil || c.databaseAuthUser()
}

// databaseAuthUser reports whether a database has its own auth_user.
func (c *Options) databaseAuthUser() bool {
	for _, d := range c.Databases {
		if d.AuthUser != "" {
			return true
		}
	}
	return false
}

// TrustConfigured reports whether some clients may log in with trust: auth_type trust,
// a database's or user's trust, or a trust line of the hba file for other hosts.
func (a *Authenticator) TrustConfigured() bool {
	c := a.cfg
	if c.Method == MethodTrust {
		return true
	}
	for _, d := range c.Databases {
		if d.Method == MethodTrust {
			return true
		}
	}
	for _, u := range c.Users {
		if u.Method == MethodTrust {
			return true
		}
	}
	if c.Method == MethodHBA {
		for _, r := range a.hba {
			if r.method == MethodTrust && r.conn != "local" {
				return true
			}
		}
	}
	return false
}

// checkCredentials logs an error at startup (and at a reload) when no client can log in:
// no rule is trust and cmpool holds no secret for any user, as with a primary URL without
// a password and no other settings. It says what to configure.
func (a *Authenticator) checkCredentials() {
	c := a.cfg
	if a.hasUserList() || c.Method == MethodReject || a.TrustConfigured() {
		return
	}
	if c.Method == MethodHBA {
		for _, r := range a.hba {
			if r.method == MethodTrust {
				return
			}
		}
	}
	if pc, err := pgconn.ParseConfig(c.Primary); err == nil && pc.Password != "" {
		return
	}
	for _, d := range c.Databases {
		if d.Password != "" {
			return
		}
		if d.URL != "" {
			if pc, err := pgconn.ParseConfig(d.URL); err == nil && pc.Password != "" {
				return
			}
		}
	}
	a.noCredentials = true
	if a.log != nil {
		a.log.Error("no client can log in: cmpool holds no password for any user. Configure one of: " +
			"auth_file (a userlist.txt), [users] entries, a password in the primary URL (DATABASE_URL) for its user, " +
			`auth_user for auth_query, or auth_type = "trust" (no passwords at all; only on a trusted network)`)
	}
}

// heldPassword returns the password cmpool itself logs in to database's server with as
// user: the primary URL's (or the database entry's URL's) password when user is that
// URL's user, or the database entry's password for its user. "" when it holds none.
func (a *Authenticator) heldPassword(database, user string) string {
	db := a.cfg.Databases[database]
	if db.User != "" {
		if db.User != user {
			return ""
		}
		if db.Password != "" {
			return db.Password
		}
	}
	cc, err := a.target(database)
	if err != nil || cc.User != user {
		return ""
	}
	if db.Password != "" {
		return db.Password
	}
	return cc.Password
}

// WarnTrust logs a warning when clients from other hosts can reach addr and log in with
// trust, that is without any password.
func (a *Authenticator) WarnTrust(addr net.Addr) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || ta.IP.IsLoopback() || !a.TrustConfigured() || a.log == nil {
		return
	}
	who := "as any user the servers let in"
	if a.hasUserList() {
		who = "as any user of auth_file, [users], auth_query or the Authenticator"
	}
	a.log.Warn("auth_type trust on a non-loopback address: anyone who can reach "+addr.String()+
		" logs in without a password, "+who+`; use auth_type "scram-sha-256" with auth_file or a password in the primary URL, or listen on 127.0.0.1`,
		"addr", addr.String())
}
