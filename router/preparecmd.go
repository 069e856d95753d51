package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// PreparedSQLKind is what a query does with SQL-level prepared statements.
type PreparedSQLKind int

// The kinds PreparedSQLOf reports.
const (
	// SQLPrepare is PREPARE name [(types)] AS statement, alone in its query.
	SQLPrepare PreparedSQLKind = iota + 1
	// SQLExecute is a statement that runs a prepared statement by name, alone in its
	// query: EXECUTE name [(args)], EXPLAIN … EXECUTE name, CREATE TABLE … AS EXECUTE name.
	SQLExecute
	// SQLMultiple is a query of several statements, one of which is PREPARE, EXECUTE
	// (also under EXPLAIN or CREATE TABLE AS) or DEALLOCATE.
	SQLMultiple
	// SQLUnparsed is a query that starts with PREPARE but that the grammar does not
	// accept; Err says why.
	SQLUnparsed
)

// PreparedSQL is an SQL-level prepared-statement command, found by PreparedSQLOf.
type PreparedSQL struct {
	Kind PreparedSQLKind
	// Name is the statement's name as PostgreSQL keeps it: a bare word in lower case, a
	// quoted one as written, either cut to 63 bytes.
	Name string
	// Types is PREPARE's parenthesised list of parameter types as written ("(int, text)"),
	// or "" without one; Body is the statement after AS, as written, without the
	// comments and semicolons that may end the query.
	Types, Body string
	// NameStart and NameEnd are where EXECUTE's name is written in the query (quotes
	// included): the bytes to replace to run another statement name.
	NameStart, NameEnd int
	// Plain: the query is EXECUTE itself (not under EXPLAIN or CREATE TABLE AS), so it
	// does what the statement it runs does.
	Plain bool
	// Err is the grammar's complaint about an SQLUnparsed query.
	Err string
}

// PreparedSQLOf reports whether q, a simple-protocol query, prepares or runs an SQL-level
// prepared statement, and how. A query that only deallocates one is not reported unless
// it has other statements too (CommandOf finds DEALLOCATE alone). A query the grammar
// does not accept is not reported either: the server refuses it, and nothing is
// prepared; except a PREPARE, reported as SQLUnparsed, so that it never reaches a
// server under the client's own name. PREPARE TRANSACTION is two-phase commit, not
// reported.
//
// Most queries are judged by a glance, without the grammar: only a query whose first
// word is PREPARE, EXECUTE, EXPLAIN or CREATE, or one of several statements that names
// any of these commands, is parsed.
func PreparedSQLOf(q string) (PreparedSQL, bool) {
	if !mayUsePreparedSQL(q) {
		return PreparedSQL{}, false
	}
	if p, ok := plainExecute(q); ok {
		return p, true
	}
	return preparedSQLByGrammar(q)
}

// plainExecute reads q when it is EXECUTE name [(args)] alone, in the simplest spelling,
// without the grammar: the common case, kept cheap. The name is an ASCII bare word or a
// quoted one; no semicolon anywhere (a second statement, or one inside a literal: the
// grammar decides). The arguments are left to the server. ok is false for anything
// else, which preparedSQLByGrammar reads.
func plainExecute(q string) (PreparedSQL, bool) {
	if strings.IndexByte(q, ';') >= 0 {
		return PreparedSQL{}, false
	}
	lx := lexer{s: q}
	if lx.word() != "execute" {
		return PreparedSQL{}, false
	}
	lx.skip()
	start := lx.i
	if start >= len(q) {
		return PreparedSQL{}, false
	}
	if c := q[start]; c != '"' && !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return PreparedSQL{}, false
	}
	name, quoted := lx.ident()
	end := lx.i
	if name == "" {
		return PreparedSQL{}, false
	}
	if !quoted {
		for i := start; i < end; i++ {
			if q[i] >= 0x80 {
				return PreparedSQL{}, false // PostgreSQL folds only ASCII letters
			}
		}
		if reservedWords[name] {
			return PreparedSQL{}, false
		}
	}
	if len(name) > maxIdentLen {
		name = truncateIdent(name)
	}
	if !lx.at('(') && !lx.end() {
		return PreparedSQL{}, false
	}
	return PreparedSQL{Kind: SQLExecute, Name: name, NameStart: start, NameEnd: end, Plain: true}, true
}

// reservedWords are the keywords that cannot name a statement unquoted (PostgreSQL's
// reserved and type/function-name keywords): EXECUTE of one is left to the grammar,
// which refuses it.
var reservedWords = func() map[string]bool {
	m := make(map[string]bool)
	for _, w := range strings.Fields(`all analyse analyze and any array as asc asymmetric both
		case cast check collate column constraint create current_catalog current_date
		current_role current_time current_timestamp current_user default deferrable desc
		distinct do else end except false fetch for foreign from grant group having in
		initially intersect into lateral leading limit localtime localtimestamp not null
		offset on only or order placing primary references returning select session_user
		some symmetric system_user table then to trailing true union unique user using
		variadic when where window with
		authorization binary collation concurrently cross current_schema freeze full ilike
		inner is isnull join left like natural notnull outer overlaps right similar
		tablesample verbose`) {
		m[w] = true
	}
	return m
}()

// preparedSQLByGrammar is PreparedSQLOf with PostgreSQL's grammar and scanner.
func preparedSQLByGrammar(q string) (PreparedSQL, bool) {
	tree, err := pg_query.Parse(q)
	if err != nil {
		if lx := (lexer{s: q}); lx.word() == "prepare" {
			return PreparedSQL{Kind: SQLUnparsed, Err: err.Error()}, true
		}
		return PreparedSQL{}, false
	}
	if len(tree.Stmts) == 0 {
		return PreparedSQL{}, false
	}
	if len(tree.Stmts) > 1 {
		for _, raw := range tree.Stmts {
			if raw.Stmt.GetPrepareStmt() != nil || raw.Stmt.GetDeallocateStmt() != nil || executeOf(raw.Stmt) != nil {
				return PreparedSQL{Kind: SQLMultiple}, true
			}
		}
		return PreparedSQL{}, false
	}
	stmt := tree.Stmts[0].Stmt
	if p := stmt.GetPrepareStmt(); p != nil {
		return prepareOf(q, p.Name)
	}
	if e := executeOf(stmt); e != nil {
		return executeAt(q, e.Name)
	}
	return PreparedSQL{}, false
}

// mayUsePreparedSQL is the glance of PreparedSQLOf: whether q may be one of its commands.
func mayUsePreparedSQL(q string) bool {
	lx := lexer{s: q}
	switch lx.word() {
	case "prepare", "execute":
		return true
	case "explain", "create":
		if ContainsFold(q, "execute") {
			return true
		}
	}
	if i := strings.IndexByte(q, ';'); i >= 0 {
		if lx := (lexer{s: q, i: i}); !lx.end() {
			return ContainsFold(q, "prepare") || ContainsFold(q, "execute") || ContainsFold(q, "deallocate")
		}
	}
	return false
}

// executeOf returns the EXECUTE that statement n is or runs: itself, or under EXPLAIN or
// CREATE TABLE AS.
func executeOf(n *pg_query.Node) *pg_query.ExecuteStmt {
	if e := n.GetExecuteStmt(); e != nil {
		return e
	}
	if ex := n.GetExplainStmt(); ex != nil && ex.Query != nil {
		return ex.Query.GetExecuteStmt()
	}
	if ctas := n.GetCreateTableAsStmt(); ctas != nil && ctas.Query != nil {
		return ctas.Query.GetExecuteStmt()
	}
	return nil
}

// meaningful returns q's tokens without comments.
func meaningful(q string) ([]*pg_query.ScanToken, bool) {
	res, err := pg_query.Scan(q)
	if err != nil {
		return nil, false
	}
	toks := res.Tokens[:0]
	for _, t := range res.Tokens {
		if t.Token != pg_query.Token_SQL_COMMENT && t.Token != pg_query.Token_C_COMMENT {
			toks = append(toks, t)
		}
	}
	return toks, true
}

// prepareOf finds the parts of q, a PREPARE of statement name accepted by the grammar.
func prepareOf(q, name string) (PreparedSQL, bool) {
	toks, ok := meaningful(q)
	if !ok || len(toks) < 4 || toks[0].Token != pg_query.Token_PREPARE {
		return PreparedSQL{}, false
	}
	p := PreparedSQL{Kind: SQLPrepare, Name: name}
	i := 2 // after PREPARE name
	if toks[i].Token == pg_query.Token_ASCII_40 {
		depth := 0
		for j := i; j < len(toks); j++ {
			switch toks[j].Token {
			case pg_query.Token_ASCII_40:
				depth++
			case pg_query.Token_ASCII_41:
				depth--
			}
			if depth == 0 {
				p.Types = q[toks[i].Start:toks[j].End]
				i = j + 1
				break
			}
		}
	}
	if i >= len(toks) || toks[i].Token != pg_query.Token_AS {
		return PreparedSQL{}, false
	}
	end := len(toks)
	for end > i+1 && toks[end-1].Token == pg_query.Token_ASCII_59 {
		end--
	}
	if end <= i+1 {
		return PreparedSQL{}, false
	}
	p.Body = q[toks[i+1].Start:toks[end-1].End]
	return p, true
}

// executeAt finds where q, a statement that runs prepared statement name, writes the
// name: after the first EXECUTE keyword followed by it (for EXPLAIN and CREATE TABLE
// AS, where a table or option may be spelt "execute" too).
func executeAt(q, name string) (PreparedSQL, bool) {
	toks, ok := meaningful(q)
	if !ok {
		return PreparedSQL{}, false
	}
	for i := 0; i+1 < len(toks); i++ {
		if toks[i].Token != pg_query.Token_EXECUTE {
			continue
		}
		t := toks[i+1]
		if i == 0 { // EXECUTE name: the grammar says the name comes next
			return PreparedSQL{Kind: SQLExecute, Name: name, NameStart: int(t.Start), NameEnd: int(t.End), Plain: true}, true
		}
		lx := lexer{s: q[:t.End], i: int(t.Start)}
		w, _ := lx.ident()
		if len(w) > maxIdentLen {
			w = truncateIdent(w)
		}
		if w == name && lx.i == int(t.End) {
			return PreparedSQL{Kind: SQLExecute, Name: name, NameStart: int(t.Start), NameEnd: int(t.End)}, true
		}
	}
	return PreparedSQL{}, false
}
