package router

import (
	"strings"
	"unsafe"
)

// SessionBound reports whether a query uses something that outlives its transaction on
// the server: a session advisory lock or a WITH HOLD cursor. (Temporary objects are
// refused before they reach the server, unless created ON COMMIT DROP: see TempObject.)
func SessionBound(q string) bool { return PinsSession(q) }

// PinsSession reports whether a query may take a session advisory lock
// (pg_advisory_lock, pg_try_advisory_lock and their _shared variants) or declare a WITH
// HOLD cursor: session state that stays on the server after the transaction. The
// transaction-level locks (pg_advisory_xact_lock, pg_try_advisory_xact_lock) end with
// the transaction and do not count, nor does pg_advisory_unlock.
func PinsSession(q string) bool {
	if ContainsFold(q, "with hold") && ContainsFold(q, "declare") {
		// DECLARE first, or later in a query string ("BEGIN; DECLARE … WITH HOLD …").
		return true
	}
	// "advisory_lock" is in pg_advisory_lock, pg_try_advisory_lock and their _shared
	// variants, and in none of the _xact_ or unlock functions.
	return ContainsFold(q, "advisory_lock")
}

// MayReleaseSession reports whether a query may release session state that PinsSession
// or a temporary object left on the server: an advisory unlock, CLOSE, DISCARD, DROP or
// RESET (or code that cmpool cannot see, which the caller judges apart).
func MayReleaseSession(q string) bool {
	lx := lexer{s: q}
	switch lx.word() {
	case "close", "discard", "drop", "reset":
		return true
	}
	return ContainsFold(q, "unlock")
}

// MayChangeSettings reports whether q may change session settings without naming them in
// its first statement, as far as a glance can tell: it holds a parenthesis (a function
// call), a second statement, or starts with a command that runs code. Only then is the
// grammar asked (Verdict.UntrackedSettings). A query with none of these calls no
// function: "SELECT abalance FROM pgbench_accounts WHERE aid = $1" is judged here.
func MayChangeSettings(q string) bool {
	if strings.IndexByte(q, '(') >= 0 {
		return true
	}
	if i := strings.IndexByte(q, ';'); i >= 0 {
		if lx := (lexer{s: q, i: i}); !lx.end() {
			return true
		}
	}
	lx := lexer{s: q}
	lx.skip()
	if lx.i >= len(q) {
		return false
	}
	switch q[lx.i] | 0x20 { // a first letter in lower case
	case 'd', 'c', 'l', 'e', 'a':
		switch lx.word() {
		case "do", "call", "load", "execute", "create", "alter":
			return true
		}
	}
	return false
}

// WithoutNumbers returns q with every numeric constant replaced by 0, so that statements
// differing only in numbers share one classification (a number never changes how a
// statement may change settings). Quoted text, quoted identifiers, comments and $n
// parameters are left as they are. q itself is returned when it has no number to replace.
func WithoutNumbers(q string) string {
	b, replaced := appendWithoutNumbers(nil, q)
	if !replaced {
		return q
	}
	return string(b)
}

// appendWithoutNumbers appends WithoutNumbers(q) to b and reports true when q has a
// number to replace; else it returns b as it was, and false.
func appendWithoutNumbers(b []byte, q string) ([]byte, bool) {
	start, replaced := len(b), false
	last := 0 // q[last:i] is still to be copied into b
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j + 1
		case c == '-' && strings.HasPrefix(q[i:], "--"), c == '/' && strings.HasPrefix(q[i:], "/*"):
			lx := lexer{s: q, i: i}
			lx.skip()
			i = lx.i
		case c == '$':
			// $n, or a dollar-quoted string $tag$...$tag$
			j := i + 1
			for j < len(q) && (q[j] == '_' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z' || q[j] >= '0' && q[j] <= '9' && j > i+1) {
				j++
			}
			if j < len(q) && q[j] == '$' {
				tag := q[i : j+1]
				if end := strings.Index(q[j+1:], tag); end >= 0 {
					i = j + 1 + end + len(tag)
				} else {
					i = len(q)
				}
				continue
			}
			for i++; i < len(q) && q[i] >= '0' && q[i] <= '9'; i++ {
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			if i > 0 && isIdentByte(q[i-1]) {
				i++ // part of a name
				continue
			}
			j := i
			for j < len(q) && (q[j] >= '0' && q[j] <= '9' || q[j] == '.' || q[j] == '_') {
				j++
			}
			if j < len(q) && (q[j] == 'e' || q[j] == 'E') {
				k := j + 1
				if k < len(q) && (q[k] == '+' || q[k] == '-') {
					k++
				}
				if k < len(q) && q[k] >= '0' && q[k] <= '9' {
					for j = k; j < len(q) && q[j] >= '0' && q[j] <= '9'; j++ {
					}
				}
			}
			if j < len(q) && isIdentByte(q[j]) {
				i = j // 0x1F, 1_000abc: leave what is not a plain number
				continue
			}
			if j-i == 1 && c == '0' {
				i = j
				continue
			}
			b = append(b, q[last:i]...)
			b = append(b, '0')
			last, i, replaced = j, j, true
		default:
			i++
		}
	}
	if !replaced {
		return b[:start], false
	}
	return append(b, q[last:]...), true
}

// ContainsFold reports whether s contains the lower-case ASCII substr, ignoring case.
// It runs on every statement, several times, so it looks for the first byte of substr
// with strings.IndexByte (vectorised) and compares the rest only there.
func ContainsFold[T string | []byte](s T, substr string) bool {
	switch v := any(s).(type) {
	case string:
		return containsFold(v, substr)
	case []byte:
		return containsFold(unsafe.String(unsafe.SliceData(v), len(v)), substr)
	}
	return false
}

func containsFold(s, substr string) bool {
	n := len(substr)
	if n == 0 {
		return true
	}
	last := len(s) - n // the last place a match can start
	first, upper := substr[0], substr[0]
	if 'a' <= first && first <= 'z' {
		upper = first - ('a' - 'A')
	}
	// lo and up are the next places of the first byte in each case at or after i (last+1
	// for none): each is searched again only once passed, so that a long statement full of
	// one case is scanned once for the other.
	lo, up := -1, -1
	for i := 0; i <= last; {
		if lo < i {
			lo = indexByteFrom(s, first, i, last)
		}
		if upper == first {
			up = lo
		} else if up < i {
			up = indexByteFrom(s, upper, i, last)
		}
		c := min(lo, up)
		if c > last {
			return false
		}
		if hasLowerPrefix(s[c+1:], substr[1:]) {
			return true
		}
		i = c + 1
	}
	return false
}

// indexByteFrom returns the first place of b in s[i:last+1], as an index into s, or last+1.
func indexByteFrom(s string, b byte, i, last int) int {
	if j := strings.IndexByte(s[i:last+1], b); j >= 0 {
		return i + j
	}
	return last + 1
}

// hasLowerPrefix reports whether s starts with the lower-case ASCII prefix, ignoring case.
func hasLowerPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for j := 0; j < len(prefix); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[j] {
			return false
		}
	}
	return true
}
