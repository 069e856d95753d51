package pool

import (
	"strings"
)

// The few SQL commands cmpool answers or refuses itself, recognised on simple-protocol
// queries by their leading keywords. Anything else, including these inside a longer
// multi-statement string, goes to the server.
const (
	sqlOther = iota
	sqlDeallocate
	sqlDeallocateAll
	sqlDiscardAll
	sqlPrepare
	sqlPrepareTransaction // PREPARE TRANSACTION 'gid': two-phase commit, not a statement
	sqlExecute
	sqlListen
	sqlSet      // a non-LOCAL SET of parameter name
	sqlReset    // RESET name
	sqlResetAll // RESET ALL
)

// characteristicsParams are what SET SESSION CHARACTERISTICS AS TRANSACTION changes.
var characteristicsParams = []string{"default_transaction_isolation", "default_transaction_read_only", "default_transaction_deferrable"}

// classifySQL returns the command kind of a query's first statement and, for DEALLOCATE,
// SET and RESET, the name it acts on (parameter names in lower case; "characteristics" for
// SET SESSION CHARACTERISTICS).
func classifySQL(q string) (kind int, name string) {
	lx := lexer{s: q}
	first := lx.word()
	switch first {
	case "listen":
		return sqlListen, ""
	case "set":
		w := lx.word()
		if w == "local" || w == "transaction" || w == "constraints" || w == "" {
			return sqlOther, ""
		}
		if w == "session" {
			save := lx.i
			switch lx.word() {
			case "characteristics":
				return sqlSet, "characteristics"
			case "authorization":
				return sqlSet, "session_authorization"
			}
			lx.i = save
			w = lx.word()
		}
		switch w {
		case "time":
			return sqlSet, "timezone"
		case "role":
			return sqlSet, "role"
		}
		return sqlSet, lx.dotted(w)
	case "reset":
		w := lx.word()
		switch w {
		case "":
			return sqlOther, ""
		case "all":
			return sqlResetAll, ""
		case "time":
			return sqlReset, "timezone"
		case "session":
			return sqlReset, "session_authorization"
		}
		return sqlReset, lx.dotted(w)
	case "prepare":
		// PREPARE TRANSACTION 'gid' against PREPARE transaction AS …, a statement named
		// "transaction": the grammar tells them apart by what follows the word.
		save := lx.i
		if lx.word() == "transaction" {
			if next := lx.word(); next != "as" && !lx.at('(') {
				return sqlPrepareTransaction, ""
			}
		}
		lx.i = save
		return sqlPrepare, ""
	case "execute":
		return sqlExecute, ""
	case "discard":
		if lx.word() == "all" && lx.end() {
			return sqlDiscardAll, ""
		}
	case "deallocate":
		w, quoted := lx.ident()
		if w == "prepare" && !quoted {
			w, quoted = lx.ident()
		}
		if w == "" || !lx.end() {
			return sqlOther, ""
		}
		if w == "all" && !quoted {
			return sqlDeallocateAll, ""
		}
		return sqlDeallocate, w
	}
	return sqlOther, ""
}

// lexer reads keywords and identifiers, skipping whitespace and comments.
type lexer struct {
	s string
	i int
}

func (lx *lexer) skip() {
	for lx.i < len(lx.s) {
		switch c := lx.s[lx.i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			lx.i++
		case strings.HasPrefix(lx.s[lx.i:], "--"):
			nl := strings.IndexByte(lx.s[lx.i:], '\n')
			if nl < 0 {
				lx.i = len(lx.s)
			} else {
				lx.i += nl + 1
			}
		case strings.HasPrefix(lx.s[lx.i:], "/*"):
			depth := 0
			for lx.i < len(lx.s) {
				if strings.HasPrefix(lx.s[lx.i:], "/*") {
					depth++
					lx.i += 2
				} else if strings.HasPrefix(lx.s[lx.i:], "*/") {
					depth--
					lx.i += 2
					if depth == 0 {
						break
					}
				} else {
					lx.i++
				}
			}
		default:
			return
		}
	}
}

// setToDefault reports whether q is SET [SESSION] name TO DEFAULT (or = DEFAULT), or SET
// TIME ZONE DEFAULT or LOCAL: a RESET. SET LOCAL is not: it lasts until the transaction
// ends.
func setToDefault(q string) bool {
	lx := lexer{s: q}
	if lx.word() != "set" {
		return false
	}
	w := lx.word()
	if w == "session" {
		w = lx.word()
	}
	switch w {
	case "", "local", "transaction", "constraints", "characteristics", "authorization", "role":
		return false
	case "time":
		if lx.word() != "zone" {
			return false
		}
		v := lx.word()
		return (v == "default" || v == "local") && lx.stmtEnd()
	}
	lx.dotted(w)
	if lx.at('=') {
		lx.i++
	} else if lx.word() != "to" {
		return false
	}
	return lx.word() == "default" && lx.stmtEnd()
}

// stmtEnd reports whether the statement ends here: at a semicolon or the end of the text.
func (lx *lexer) stmtEnd() bool {
	return lx.at(';') || lx.i >= len(lx.s)
}

// at reports whether the next character, after whitespace and comments, is c.
func (lx *lexer) at(c byte) bool {
	lx.skip()
	return lx.i < len(lx.s) && lx.s[lx.i] == c
}

// dotted completes a possibly qualified parameter name (a.b) whose first part is w.
func (lx *lexer) dotted(w string) string {
	for lx.i < len(lx.s) && lx.s[lx.i] == '.' {
		lx.i++
		w += "." + lx.word()
	}
	return w
}

// sessionBound reports whether a query uses something that outlives its transaction on
// the server: a session advisory lock or a WITH HOLD cursor. (Temporary objects are
// refused before they reach the server, unless created ON COMMIT DROP: see tempObjectOf.)
func sessionBound(q string) bool {
	lx := lexer{s: q}
	switch lx.word() {
	case "declare":
		if containsFold(q, "with hold") {
			return true
		}
	}
	return containsFold(q, "advisory_lock")
}

// mayChangeSettings reports whether q may change session settings without naming them in
// its first statement, as far as a glance can tell: it holds a parenthesis (a function
// call), a second statement, or starts with a command that runs code. Only then is the
// grammar asked (router.Verdict.UntrackedSettings). A query with none of these calls no
// function: "SELECT abalance FROM pgbench_accounts WHERE aid = $1" is judged here.
func mayChangeSettings(q string) bool {
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

// withoutNumbers returns q with every numeric constant replaced by 0, so that statements
// differing only in numbers share one classification (a number never changes how a
// statement may change settings). Quoted text, quoted identifiers, comments and $n
// parameters are left as they are. q itself is returned when it has no number to replace.
func withoutNumbers(q string) string {
	var b []byte
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
			last, i = j, j
		default:
			i++
		}
	}
	if b == nil {
		return q
	}
	return string(append(b, q[last:]...))
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// containsFold reports whether s contains the lower-case ASCII substr, ignoring case.
func containsFold[T string | []byte](s T, substr string) bool {
	n := len(substr)
outer:
	for i := 0; i+n <= len(s); i++ {
		for j := 0; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != substr[j] {
				continue outer
			}
		}
		return true
	}
	return false
}

// word returns the next bare word in lower case, or "".
func (lx *lexer) word() string {
	w, quoted := lx.ident()
	if quoted {
		return ""
	}
	return w
}

// ident returns the next identifier: a bare word folded to lower case, or a
// double-quoted one as written.
func (lx *lexer) ident() (string, bool) {
	lx.skip()
	if lx.i >= len(lx.s) {
		return "", false
	}
	if lx.s[lx.i] == '"' {
		var b strings.Builder
		for j := lx.i + 1; j < len(lx.s); j++ {
			if lx.s[j] == '"' {
				if j+1 < len(lx.s) && lx.s[j+1] == '"' {
					b.WriteByte('"')
					j++
					continue
				}
				lx.i = j + 1
				return b.String(), true
			}
			b.WriteByte(lx.s[j])
		}
		return "", false
	}
	start := lx.i
	for lx.i < len(lx.s) {
		c := lx.s[lx.i]
		if c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 {
			lx.i++
			continue
		}
		break
	}
	return lowerWord(lx.s[start:lx.i]), false
}

// lowerWord folds a bare word to lower case. A word already in lower case is returned as
// is, and the keywords cmpool looks for (and the usual first words of a statement) come
// from a table, so that judging a query's first statement allocates nothing.
func lowerWord(w string) string {
	upper := false
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case c >= 0x80:
			return strings.ToLower(w) // not ASCII: Unicode case folding
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if !upper {
		return w
	}
	var buf [16]byte
	if len(w) <= len(buf) {
		for i := 0; i < len(w); i++ {
			c := w[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		if kw, ok := lexerKeywords[string(buf[:len(w)])]; ok {
			return kw
		}
	}
	return strings.ToLower(w)
}

// lexerKeywords are the words lowerWord returns without allocating.
var lexerKeywords = func() map[string]string {
	m := make(map[string]string)
	for _, w := range []string{
		// classifySQL and sessionBound
		"all", "alter", "authorization", "characteristics", "constraints", "create", "deallocate", "declare", "do", "load",
		"discard", "execute", "global", "listen", "local", "prepare", "reset", "role", "session",
		"set", "temp", "temporary", "time", "transaction",
		// first words of common statements
		"abort", "begin", "call", "commit", "copy", "delete", "end", "explain", "fetch", "insert",
		"lock", "merge", "rollback", "savepoint", "select", "show", "start", "table", "truncate",
		"update", "values", "with",
	} {
		m[w] = w
	}
	return m
}()

// end reports whether only whitespace, comments and semicolons remain.
func (lx *lexer) end() bool {
	for {
		lx.skip()
		if lx.i < len(lx.s) && lx.s[lx.i] == ';' {
			lx.i++
			continue
		}
		return lx.i >= len(lx.s)
	}
}
