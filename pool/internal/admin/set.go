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
