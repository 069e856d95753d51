package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cmlite/cmpool/protocol"
)

// codeUndefinedObject is PostgreSQL's SQLSTATE for an unrecognized configuration
// parameter, which SET answers for a key neither cmpool nor PgBouncer has.
const codeUndefinedObject = "42704"

// splitStatements splits a query string at the semicolons outside quotes.
func splitStatements(query string) []string {
	var out []string
	var quote rune
	start := 0
	for i, r := range query {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0 // a doubled quote closes and opens again: same result
			}
		case r == '\'' || r == '"':
			quote = r
		case r == ';':
			out = append(out, query[start:i])
			start = i + 1
		}
	}
	return append(out, query[start:])
}

// isSet reports whether stmt is a SET command.
func isSet(stmt string) bool {
	s := strings.TrimLeftFunc(stmt, unicode.IsSpace)
	return len(s) > 3 && strings.EqualFold(s[:3], "SET") && unicode.IsSpace(rune(s[3]))
}

// parseSet parses "SET key = value" or "SET key TO value", as PgBouncer's console takes
// it: key is a word or a double-quoted name, value a word or a single- or double-quoted
// string (a doubled quote inside stands for one).
func parseSet(stmt string) (key, value string, pe *protocol.Error) {
	bad := func(why string) (string, string, *protocol.Error) {
		return "", "", protocol.NewError(protocol.CodeSyntaxError, "SET: "+why+"; write SET key = value")
	}
	s := strings.TrimSpace(stmt)[3:]
	key, s, ok := token(s)
	if !ok || key == "" {
		return bad("a setting name is missing")
	}
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	switch {
	case strings.HasPrefix(s, "="):
		s = s[1:]
	case len(s) > 2 && strings.EqualFold(s[:2], "TO") && unicode.IsSpace(rune(s[2])):
		s = s[2:]
	default:
		return bad("= or TO is missing after " + key)
	}
	value, s, ok = token(s)
	if !ok {
		return bad("the value of " + key + " is missing or its quote is not closed")
	}
	if strings.TrimSpace(s) != "" {
		return bad(fmt.Sprintf("unexpected %q after the value of %s", strings.TrimSpace(s), key))
	}
	return strings.ToLower(key), value, nil
}

// token reads one word or quoted string from the start of s (after spaces) and returns
// it, unquoted, and the rest of s.
func token(s string) (tok, rest string, ok bool) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	if s == "" {
		return "", "", false
	}
	if q := s[0]; q == '\'' || q == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] != q {
				b.WriteByte(s[i])
				continue
			}
			if i+1 < len(s) && s[i+1] == q {
				b.WriteByte(q)
				i++
				continue
			}
			return b.String(), s[i+1:], true
		}
		return "", "", false
	}
	end := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '=' })
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return "", s, false
	}
	return s[:end], s[end:], true
}

// ParseSeconds parses a duration as the configuration file takes it: a Go duration
// string ("2s", "500ms"), or a bare number of seconds, as in PgBouncer.
func ParseSeconds(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("%q is negative", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a number of seconds nor a duration such as 1.5s", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", v)
	}
	return d, nil
}

// ParseBool parses a flag as PgBouncer does: 1/0, on/off, true/false, yes/no.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "on", "true", "yes":
		return true, nil
	case "0", "off", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (1/0, on/off, true/false, yes/no)", v)
}

// ParseInt parses a non-negative count.
func ParseInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	return n, nil
}

// ParseList parses a comma-separated list of names, as admin_users; empty means none.
func ParseList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// fakeParams are the session parameters drivers set or show on connecting; the console
// answers them as PgBouncer does (SET is ignored with a NOTICE) instead of failing.
var fakeParams = map[string]string{
	"client_encoding":               "UTF8",
	"default_transaction_isolation": "read committed",
	"standard_conforming_strings":   "on",
	"datestyle":                     "ISO",
	"timezone":                      "UTC",
}

// set runs a SET statement.
func (c *Console) set(stmt string) ([]byte, *protocol.Error) {
	key, value, pe := parseSet(stmt)
	if pe != nil {
		return nil, pe
	}
	if _, ok := fakeParams[key]; ok {
		return append(appendNotice(nil, "SET ignored: "+key+" is a session parameter, and the console's are fixed"),
			commandComplete("SET")...), nil
	}
	if c.Ctl.Role(c.User) != RoleAdmin {
		return nil, protocol.NewError(protocol.CodeInsufficientPrivilege,
			fmt.Sprintf("SET is for admin_users; user %q may only run SHOW commands", c.User))
	}
	if pe := c.Ctl.Set(key, value); pe != nil {
		return nil, pe
	}
	c.Log.Info("setting changed by the admin console", "setting", key, "value", value, "user", c.User)
	return commandComplete("SET"), nil
}

// restartOnly are the settings cmpool has that SET cannot change, with the reason.
var restartOnly = map[string]string{
	"listen_addr":    "the listening socket is opened at start",
	"listen_port":    "the listening socket is opened at start",
	"listen":         "the listening socket is opened at start",
	"so_reuseport":   "the listening socket is opened at start",
	"peer_id":        "the cancel keys of connected clients carry it",
	"peer_listen":    "the listening socket is opened at start",
	"metrics_listen": "the metrics listener is opened at start",
	"primary":        "it is the [databases] connection, set in the configuration file; change it there and RELOAD",
	"replicas":       "it is a list, set in the configuration file; change it there and RELOAD",
	"log_level":      "the logger is made at start",
	"log_format":     "the logger is made at start",
}

// notInCmpool are PgBouncer settings cmpool does not have, with what takes their place.
var notInCmpool = map[string]string{
	"logfile":                     "cmpool logs to stderr",
	"pidfile":                     "cmpool runs in the foreground under a supervisor",
	"unix_socket_dir":             "cmpool listens on TCP only",
	"unix_socket_mode":            "cmpool listens on TCP only",
	"unix_socket_group":           "cmpool listens on TCP only",
	"user":                        "cmpool does not change its user",
	"syslog":                      "cmpool logs to stderr",
	"syslog_ident":                "cmpool logs to stderr",
	"syslog_facility":             "cmpool logs to stderr",
	"log_disconnections":          "log_connections logs both",
	"log_pooler_errors":           "pooler errors are always logged",
	"log_stats":                   "statistics are in SHOW STATS and the Prometheus metrics",
	"stats_period":                "the averages are over 60 s",
	"verbose":                     "use log_level",
	"dns_max_ttl":                 "cmpool keeps no DNS cache",
	"dns_nxdomain_ttl":            "cmpool keeps no DNS cache",
	"dns_zone_check_period":       "cmpool keeps no DNS cache",
	"resolv_conf":                 "cmpool keeps no DNS cache",
	"autodb_idle_timeout":         "cmpool has no automatic databases",
	"pool_idle_timeout":           "server_idle_timeout closes idle server connections",
	"suspend_timeout":             "cmpool has no SUSPEND",
	"pkt_buf":                     "cmpool sizes its buffers itself",
	"sbuf_loopcnt":                "cmpool has no event loop to share",
	"listen_backlog":              "cmpool uses the operating system's backlog",
	"server_fast_close":           "RECONNECT and PAUSE close servers as they come back",
	"server_reset_query_always":   "server_reset_query runs only in session mode",
	"disable_pqexec":              "cmpool takes multi-statement queries",
	"application_name_add_host":   "cmpool passes application_name as the client sets it",
	"conffile":                    "the configuration file is given at start",
	"service_name":                "cmpool has no Windows service",
	"job_name":                    "cmpool has no Windows service",
	"scram_iterations":            "cmpool does not store SCRAM secrets",
	"auth_ident_file":             "cmpool has no ident authentication",
	"auth_ldap_options":           "cmpool has no LDAP authentication",
	"query_wait_notify":           "cmpool does not notify waiting clients",
	"login_notify_message":        "cmpool sends no login notice",
	"client_tls13_ciphers":        "Go chooses the TLS 1.3 cipher suites",
	"client_tls_ecdhcurve":        "Go chooses the curves",
	"client_tls_dheparams":        "Go does not use DHE",
	"server_tls_protocols":        "Go chooses the protocol versions for server connections",
	"server_tls_ciphers":          "Go chooses the cipher suites for server connections",
	"server_tls13_ciphers":        "Go chooses the TLS 1.3 cipher suites",
	"cancel_wait_timeout":         "a cancel request is sent as soon as it arrives",
	"max_db_client_connections":   "max_client_conn bounds the clients",
	"max_user_client_connections": "max_client_conn bounds the clients",
}

// RefuseSetting is SET's error for a key it cannot change: 55000 for a cmpool setting
// that needs a restart (or the configuration file), 0A000 for a PgBouncer setting cmpool
// does not have, 42704 for any other key.
func RefuseSetting(key string) *protocol.Error {
	if why, ok := restartOnly[key]; ok {
		return protocol.NewError(protocol.CodeObjectNotInState, fmt.Sprintf("%s cannot be changed while cmpool runs: %s", key, why))
	}
	if why, ok := notInCmpool[key]; ok {
		return protocol.NewError(protocol.CodeFeatureNotSupported, fmt.Sprintf("cmpool has no setting %s: %s", key, why))
	}
	pe := protocol.NewError(codeUndefinedObject, fmt.Sprintf("unrecognized configuration parameter %q", key))
	pe.Hint = "SHOW CONFIG lists the settings"
	return pe
}
