package backend

import (
	"fmt"
	"net/url"
	"strings"
)

// SSLModes are libpq's sslmode values, the server TLS modes; pgconn implements them.
var SSLModes = map[string]bool{
	"disable": true, "allow": true, "prefer": true, "require": true, "verify-ca": true, "verify-full": true,
}

// TLSParams returns the libpq connection parameters of these TLS settings (sslmode,
// sslrootcert, sslcert, sslkey), leaving out the empty ones.
func TLSParams(sslMode, rootCert, cert, key string) [][2]string {
	var p [][2]string
	for _, kv := range [][2]string{
		{"sslmode", sslMode},
		{"sslrootcert", rootCert},
		{"sslcert", cert},
		{"sslkey", key},
	} {
		if kv[1] != "" {
			p = append(p, kv)
		}
	}
	return p
}

// WithParams returns a connection string (URL or key=value) with params in it, so that
// pgconn.ParseConfig builds the TLS configuration exactly as libpq would. params override
// what the string says.
func WithParams(connString string, params [][2]string) string {
	if len(params) == 0 || connString == "" {
		return connString
	}
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return connString // ParseConfig reports it
		}
		q := u.Query()
		for _, kv := range params {
			q.Set(kv[0], kv[1])
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	var b strings.Builder
	b.WriteString(connString)
	for _, kv := range params {
		fmt.Fprintf(&b, " %s='%s'", kv[0], strings.ReplaceAll(strings.ReplaceAll(kv[1], `\`, `\\`), `'`, `\'`))
	}
	return b.String()
}
