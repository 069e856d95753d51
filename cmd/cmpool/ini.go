package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// This file reads PgBouncer's configuration syntax: a pgbouncer.ini as PgBouncer 1.25 reads
// it. pgbouncer.go maps what it holds onto settings.

// maxIncludeDepth is how deep %include may nest, as in PgBouncer.
const maxIncludeDepth = 10

// iniEntry is one "key = value" line of a pgbouncer.ini.
type iniEntry struct {
	Section string // lower case: "pgbouncer", "databases", "users", "peers", ...
	Key     string // lower case in [pgbouncer]; as written (a name) in the other sections
	Value   string // the rest of the line, trimmed; quotes are kept
	File    string
	Line    int
}

// where names the line an entry came from, for error messages.
func (e iniEntry) where() string { return fmt.Sprintf("%s:%d", e.File, e.Line) }

// readINIFile parses the pgbouncer.ini at path and the files it includes. An included file
// that is not an absolute path is taken relative to the working directory, as in PgBouncer.
func readINIFile(path string) ([]iniEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return parseINI(data, path, os.ReadFile)
}

// parseINI parses a pgbouncer.ini held in data, named name in errors. include reads the
// file a %include line names.
func parseINI(data []byte, name string, include func(string) ([]byte, error)) ([]iniEntry, error) {
	p := iniParser{include: include}
	if err := p.parse(data, name, 0); err != nil {
		return nil, err
	}
	return p.entries, nil
}

type iniParser struct {
	include func(string) ([]byte, error)
	section string // carries over into included files, as in PgBouncer
	entries []iniEntry
}

func (p *iniParser) parse(data []byte, name string, depth int) error {
	for i, line := range strings.Split(string(data), "\n") {
		where := fmt.Sprintf("%s:%d", name, i+1)
		line = strings.TrimSpace(line)
		switch {
		case line == "", line[0] == ';', line[0] == '#':
			// ';' and '#' start a comment only at the start of a line, as in PgBouncer.
		case strings.HasPrefix(line, "%include") && len(line) > 8 && (line[8] == ' ' || line[8] == '\t'):
			if depth >= maxIncludeDepth {
				return fmt.Errorf("%s: %%include nested more than %d deep", where, maxIncludeDepth)
			}
			file := strings.TrimSpace(line[9:])
			data, err := p.include(file)
			if err != nil {
				return fmt.Errorf("%s: %%include: %w", where, err)
			}
			if err := p.parse(data, file, depth+1); err != nil {
				return err
			}
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 || strings.TrimSpace(line[end+1:]) != "" {
				return fmt.Errorf("%s: syntax error: a section line is [name]", where)
			}
			p.section = strings.ToLower(strings.TrimSpace(line[1:end]))
		default:
			key, rest, err := iniKey(line)
			if err != nil {
				return fmt.Errorf("%s: syntax error: %w", where, err)
			}
			rest = strings.TrimLeft(rest, " \t")
			if !strings.HasPrefix(rest, "=") {
				return fmt.Errorf("%s: syntax error: want key = value", where)
			}
			if p.section == "" {
				return fmt.Errorf("%s: %q comes before any [section]", where, key)
			}
			if p.section == "pgbouncer" {
				key = strings.ToLower(key)
			}
			p.entries = append(p.entries, iniEntry{
				Section: p.section, Key: key, Value: strings.TrimSpace(rest[1:]), File: name, Line: i + 1,
			})
		}
	}
	return nil
}

// iniKey reads the key at the start of line: a bare word of letters, digits and "_.-*",
// or a name in single quotes, or one in double quotes with "" for a quote (SQL identifier
// quoting, for database names). It returns the key and what follows it.
func iniKey(line string) (key, rest string, err error) {
	switch line[0] {
	case '\'':
		end := strings.IndexByte(line[1:], '\'')
		if end <= 0 {
			return "", "", errors.New("unterminated or empty quoted key")
		}
		return line[1 : 1+end], line[2+end:], nil
	case '"':
		var b strings.Builder
		for i := 1; i < len(line); i++ {
			if line[i] != '"' {
				b.WriteByte(line[i])
				continue
			}
			if i+1 < len(line) && line[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			if b.Len() == 0 {
				return "", "", errors.New("empty quoted key")
			}
			return b.String(), line[i+1:], nil
		}
		return "", "", errors.New("unterminated quoted key")
	}
	n := 0
	for n < len(line) && isKeyChar(line[n]) {
		n++
	}
	if n == 0 {
		return "", "", fmt.Errorf("unexpected %q", line[0])
	}
	return line[:n], line[n:], nil
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.-*", c) >= 0
}

// parseConnString parses a [databases] or [peers] value: libpq-style key=value pairs
// separated by spaces, a value in single quotes with \' and \\ escapes. Keys are lower case.
func parseConnString(s string) ([][2]string, error) {
	var out [][2]string
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := strings.ToLower(s[start:i])
		skip()
		if i == len(s) || s[i] != '=' || key == "" {
			return nil, fmt.Errorf("want key=value pairs, got %q", s[start:])
		}
		i++
		skip()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					val.WriteByte(s[i])
					i++
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("%s: unterminated quoted value", key)
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' {
				val.WriteByte(s[i])
				i++
			}
		}
		out = append(out, [2]string{key, val.String()})
	}
}

// PgBouncer's value syntax.

// iniBool parses 1/0, yes/no, on/off and true/false.
func iniBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "yes", "on", "true":
		return true, nil
	case "0", "no", "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("want a boolean (1 or 0, yes or no, on or off), got %q", v)
}

// iniInt parses an integer as C's strtol with base 0 does: 0x for hexadecimal, a leading
// 0 for octal (unix_socket_mode = 0777).
func iniInt(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 0, 64)
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %q", v)
	}
	return n, nil
}

// iniCount parses a non-negative integer setting.
func iniCount(v string) (count, error) {
	n, err := iniInt(v)
	if err != nil {
		return 0, err
	}
	var c count
	if err := c.set(n); err != nil {
		return 0, fmt.Errorf("%q: %w", v, err)
	}
	return c, nil
}

// iniDuration parses a time: a number of seconds, possibly fractional, as PgBouncer takes
// it; a Go duration ("500ms") is accepted too. Negative times are refused, as in PgBouncer.
func iniDuration(v string) (duration, error) {
	d, err := parseDuration(v)
	if err != nil {
		return duration{}, err
	}
	if d < 0 {
		return duration{}, fmt.Errorf("time %q must not be negative", v)
	}
	return duration{d: d, set: true}, nil
}

// iniList parses a comma-separated list of names, PgBouncer's admin_users form.
func iniList(v string) stringList {
	var out stringList
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// looksLikeINI reports whether the config file at path is a pgbouncer.ini rather than
// TOML: by its extension (.ini), else by holding PgBouncer's main section [pgbouncer] or a
// %include line, which TOML has no use for.
func looksLikeINI(path string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ini":
		return true
	case ".toml":
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.ToLower(strings.TrimSpace(line))
		if line == "[pgbouncer]" || strings.HasPrefix(line, "%include ") {
			return true
		}
	}
	return false
}
