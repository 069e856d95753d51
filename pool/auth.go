package pool

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/pool/internal/auth"
)

// Client authentication methods (Config.AuthType and the hba file's method column).
const (
	AuthSCRAM    = auth.MethodSCRAM
	AuthMD5      = auth.MethodMD5
	AuthPassword = auth.MethodPassword
	AuthTrust    = auth.MethodTrust
	AuthReject   = auth.MethodReject
	AuthHBA      = auth.MethodHBA
)

// DefaultAuthQuery is PgBouncer's default auth_query: the user's secret from pg_authid,
// none when it has expired, and no row for roles that cannot log in.
const DefaultAuthQuery = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END " +
	"FROM pg_authid WHERE rolname = $1 AND rolcanlogin"

// Defaults for authentication settings.
const (
	DefaultAuthCacheTTL     = 60 * time.Second
	DefaultAuthFailureLimit = 10
)

// authenticator checks client logins (see package auth); passthroughKeys are what a
// client proved, used for server logins.
type (
	authenticator   = auth.Authenticator
	passthroughKeys = auth.Passthrough
)

// checkAuth validates and defaults the authentication and TLS settings.
func (c *Config) checkAuth() error {
	if c.AuthType == "" {
		// No silent trust: a client proves a password cmpool holds (see
		// auth.Authenticator.Secret), and trust is only ever what the configuration says.
		c.AuthType = AuthSCRAM
	}
	var err error
	if c.AuthType, err = auth.ParseMethod(c.AuthType, true); err != nil {
		return err
	}
	c.Databases = maps.Clone(c.Databases)
	c.Users = maps.Clone(c.Users)
	if c.AuthType == AuthHBA && c.AuthHBAFile == "" {
		return errors.New("pool: auth_type hba needs auth_hba_file")
	}
	for name, d := range c.Databases {
		if d.AuthType != "" {
			if d.AuthType, err = auth.ParseMethod(d.AuthType, false); err != nil {
				return fmt.Errorf("pool: database %q: %w", name, err)
			}
			c.Databases[name] = d
		}
	}
	for name, u := range c.Users {
		if u.AuthType != "" {
			if u.AuthType, err = auth.ParseMethod(u.AuthType, false); err != nil {
				return fmt.Errorf("pool: user %q: %w", name, err)
			}
			c.Users[name] = u
		}
	}
	if c.AuthQuery == "" && (c.AuthUser != "" || slices.ContainsFunc(slices.Collect(maps.Values(c.Databases)), func(d Database) bool { return d.AuthUser != "" })) {
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

// authOptions are cfg's authentication settings for package auth.
func authOptions(cfg *Config, target func(string) (*pgconn.Config, error), fileSecrets map[string]string) auth.Options {
	o := auth.Options{
		Method:          cfg.AuthType,
		HBAFile:         cfg.AuthHBAFile,
		AuthFile:        cfg.AuthFile,
		FileSecrets:     fileSecrets,
		AuthUser:        cfg.AuthUser,
		AuthQuery:       cfg.AuthQuery,
		AuthDBName:      cfg.AuthDBName,
		CacheTTL:        cfg.AuthCacheTTL,
		FailureLimit:    cfg.AuthFailureLimit,
		PlainWithoutTLS: cfg.AuthPlainWithoutTLS,
		TLSMode:         cfg.ClientTLSSSLMode,
		ConnectTimeout:  cfg.ServerConnectTimeout,
		Primary:         cfg.Primary,
		Target:          target,
		Logger:          cfg.Logger,
	}
	if cfg.Authenticator != nil {
		o.Source = cfg.Authenticator
	}
	if len(cfg.Users) > 0 {
		o.Users = make(map[string]auth.User, len(cfg.Users))
		for name, u := range cfg.Users {
			o.Users[name] = auth.User{Password: u.Password, Method: u.AuthType}
		}
	}
	if len(cfg.Databases) > 0 {
		o.Databases = make(map[string]auth.Database, len(cfg.Databases))
		for name, d := range cfg.Databases {
			o.Databases[name] = auth.Database{Method: d.AuthType, AuthDBName: d.AuthDBName, AuthUser: d.AuthUser, User: d.User, Password: d.Password, URL: d.URL}
		}
	}
	return o
}

// newAuthenticator makes the authenticator of cfg (validated); target is as
// auth.Options.Target.
func newAuthenticator(cfg *Config, target func(string) (*pgconn.Config, error), fileSecrets map[string]string) (*authenticator, error) {
	return auth.New(authOptions(cfg, target, fileSecrets))
}

// readAuthFile reads the auth file (see auth.ReadAuthFile).
func readAuthFile(path string) (map[string]string, error) { return auth.ReadAuthFile(path) }

// warnTrust logs a warning when clients from other hosts can reach addr and log in with
// trust, that is without any password.
func (s *Server) warnTrust(addr net.Addr) { s.authn().WarnTrust(addr) }
