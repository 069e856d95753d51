package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cmlite/cmpool/pool"
)

// The types here parse one setting the same way from a flag, an environment variable
// (flag.Value) and the TOML file (toml.Unmarshaler or encoding.TextUnmarshaler).

// poolMode is a pool.Mode that parses itself.
type poolMode pool.Mode

func (m poolMode) String() string { return string(m) }

func (m *poolMode) Set(s string) error {
	if _, err := pool.ParseMode(s); err != nil {
		return fmt.Errorf("unknown pool mode %q (want session, transaction or statement)", s)
	}
	*m = poolMode(s)
	return nil
}

func (m *poolMode) UnmarshalText(b []byte) error { return m.Set(string(b)) }

// count is a non-negative integer setting.
type count int

func (c count) String() string { return strconv.Itoa(int(c)) }

func (c *count) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not an integer")
	}
	return c.set(int64(n))
}

func (c *count) set(n int64) error {
	if n < 0 {
		return errors.New("must not be negative")
	}
	if n > math.MaxInt32 {
		return errors.New("too large")
	}
	*c = count(n)
	return nil
}

// UnmarshalTOML takes a TOML integer, or a string holding one.
func (c *count) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		return c.set(v)
	case string:
		return c.Set(v)
	}
	return fmt.Errorf("want an integer, got %T", v)
}

// duration is a time setting. It remembers whether the file set it, so that an explicit
// 0 can keep PgBouncer's meaning.
type duration struct {
	d   time.Duration
	set bool
}

// UnmarshalTOML takes a Go duration string ("2s", "500ms") or a number of seconds, as a
// TOML integer, float or string (5, 1.5, "5"), as in PgBouncer.
func (d *duration) UnmarshalTOML(v any) error {
	var err error
	switch v := v.(type) {
	case int64:
		d.d, err = seconds(float64(v))
	case float64:
		d.d, err = seconds(v)
	case string:
		d.d, err = parseDuration(v)
	default:
		err = fmt.Errorf("want a duration such as \"2s\" or a number of seconds, got %T", v)
	}
	if err != nil {
		return err
	}
	d.set = true
	return nil
}

// parseDuration parses a Go duration string, or a bare number meaning seconds.
func parseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if d, err := time.ParseDuration(t); err == nil {
		return d, nil
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil {
		return seconds(f)
	}
	return 0, fmt.Errorf("invalid duration %q (want a Go duration such as \"2s\" or \"500ms\", or a number of seconds)", s)
}

// seconds converts a number of seconds to a Duration.
func seconds(f float64) (time.Duration, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("invalid duration: not a finite number")
	}
	if math.Abs(f) > math.MaxInt64/float64(time.Second) {
		return 0, fmt.Errorf("invalid duration: %g seconds is too long", f)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// urlList is the repeatable --replica flag. The first Set replaces what an earlier layer
// (file or environment) gave; later ones append.
type urlList struct {
	urls    *[]string
	changed bool
}

func (l *urlList) String() string {
	if l == nil || l.urls == nil {
		return ""
	}
	return strings.Join(*l.urls, ",")
}

func (l *urlList) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty URL")
	}
	if !l.changed {
		*l.urls = nil
		l.changed = true
	}
	*l.urls = append(*l.urls, s)
	return nil
}

// stringList is a list of names: a TOML array of strings, or one string of
// comma-separated names as PgBouncer writes admin_users.
type stringList []string

func (l *stringList) UnmarshalTOML(v any) error {
	var out []string
	switch v := v.(type) {
	case string:
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				out = append(out, name)
			}
		}
	case []any:
		for _, e := range v {
			name, ok := e.(string)
			if !ok {
				return fmt.Errorf("want a list of names, got %v", e)
			}
			out = append(out, name)
		}
	default:
		return fmt.Errorf("want a list of names or a comma-separated string, got %v", v)
	}
	*l = out
	return nil
}
