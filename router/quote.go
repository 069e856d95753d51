package router

import "strings"

// QuoteIdent quotes s as an SQL identifier, for the statements cmpool sends on behalf of
// clients.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// QuoteLiteral quotes s as an SQL string constant, written E'…' when it holds a
// backslash, so that it reads the same whatever standard_conforming_strings is.
func QuoteLiteral(s string) string {
	if strings.Contains(s, `\`) {
		return `E'` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `''`) + `'`
	}
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
