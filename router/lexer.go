package router

import "strings"

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
	for lx.i < len(lx.s) && isIdentByte(lx.s[lx.i]) {
		lx.i++
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
		if kw := keyword(buf[:len(w)]); kw != "" {
			return kw
		}
	}
	return strings.ToLower(w)
}

// keyword returns the keyword that lower-case word b spells, from the words lowerWord
// returns without allocating, or "": the words CommandOf and SessionBound look for, and
// the usual first words of a statement. A switch, which compares by length and then
// bytes, costs half what hashing b for a map did.
func keyword(b []byte) string {
	switch string(b) {
	case "all":
		return "all"
	case "alter":
		return "alter"
	case "authorization":
		return "authorization"
	case "characteristics":
		return "characteristics"
	case "constraints":
		return "constraints"
	case "create":
		return "create"
	case "deallocate":
		return "deallocate"
	case "declare":
		return "declare"
	case "do":
		return "do"
	case "load":
		return "load"
	case "discard":
		return "discard"
	case "execute":
		return "execute"
	case "global":
		return "global"
	case "listen":
		return "listen"
	case "local":
		return "local"
	case "prepare":
		return "prepare"
	case "reset":
		return "reset"
	case "role":
		return "role"
	case "session":
		return "session"
	case "set":
		return "set"
	case "temp":
		return "temp"
	case "temporary":
		return "temporary"
	case "time":
		return "time"
	case "transaction":
		return "transaction"
	case "unlisten":
		return "unlisten"
	case "abort":
		return "abort"
	case "begin":
		return "begin"
	case "call":
		return "call"
	case "commit":
		return "commit"
	case "copy":
		return "copy"
	case "delete":
		return "delete"
	case "end":
		return "end"
	case "explain":
		return "explain"
	case "fetch":
		return "fetch"
	case "insert":
		return "insert"
	case "lock":
		return "lock"
	case "merge":
		return "merge"
	case "rollback":
		return "rollback"
	case "savepoint":
		return "savepoint"
	case "select":
		return "select"
	case "show":
		return "show"
	case "start":
		return "start"
	case "table":
		return "table"
	case "truncate":
		return "truncate"
	case "update":
		return "update"
	case "values":
		return "values"
	case "with":
		return "with"
	}
	return ""
}

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

// isIdentByte reports whether c can continue an unquoted identifier.
func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
