package auth

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
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
	// AuthUser overrides Options.AuthUser for the database's clients; "" means none.
	AuthUser string
	// User and Password are what cmpool logs in to the database's server with; URL is
	// the entry's server. "" means the primary URL's.
	User, Password, URL string
}

// SecretSource looks up a user's secret: plain, md5 or SCRAM.
type SecretSource interface {
	Lookup(ctx context.Context, user string) (secret string, found bool, err error)
}
