package router

import (
	"strings"
	"unicode/utf8"
)

// Command is one of the few SQL commands cmpool answers or refuses itself, recognised on
// simple-protocol queries by their leading keywords. Anything else, including these
// inside a longer multi-statement string, goes to the server.
type Command int

// The commands CommandOf recognises.
const (
	CommandOther Command = iota
	CommandDeallocate
	CommandDeallocateAll
	CommandDiscardAll
	CommandPrepare
	CommandPrepareTransaction // PREPARE TRANSACTION 'gid': two-phase commit, not a statement
	CommandExecute
	CommandListen      // LISTEN channel: name is the channel, "" when more follows
	CommandUnlisten    // UNLISTEN channel: name is the channel, "" when more follows
	CommandUnlistenAll // UNLISTEN *
	CommandSet         // a non-LOCAL SET of parameter name
	CommandReset       // RESET name
	CommandResetAll    // RESET ALL
)

// CharacteristicsParams are what SET SESSION CHARACTERISTICS AS TRANSACTION changes.
var CharacteristicsParams = []string{"default_transaction_isolation", "default_transaction_read_only", "default_transaction_deferrable"}

// CommandOf returns the command kind of a query's first statement and, for DEALLOCATE,
// SET and RESET, the name it acts on (parameter names in lower case; "characteristics" for
// SET SESSION CHARACTERISTICS).
func CommandOf(q string) (kind Command, name string) {
	lx := lexer{s: q}
	first := lx.word()
	switch first {
	case "listen":
		return CommandListen, channelName(&lx)
	case "unlisten":
		if lx.at('*') {
			lx.i++
			if lx.end() {
				return CommandUnlistenAll, ""
			}
			return CommandUnlisten, ""
		}
		return CommandUnlisten, channelName(&lx)
	case "set":
		w := lx.word()
		if w == "local" || w == "transaction" || w == "constraints" || w == "" {
			return CommandOther, ""
		}
		if w == "session" {
			save := lx.i
			switch lx.word() {
			case "characteristics":
				return CommandSet, "characteristics"
			case "authorization":
				return CommandSet, "session_authorization"
			}
			lx.i = save
			w = lx.word()
		}
		switch w {
		case "time":
			return CommandSet, "timezone"
		case "role":
			return CommandSet, "role"
		}
		return CommandSet, lx.dotted(w)
	case "reset":
		w := lx.word()
		switch w {
		case "":
			return CommandOther, ""
		case "all":
			return CommandResetAll, ""
		case "time":
			return CommandReset, "timezone"
		case "session":
			return CommandReset, "session_authorization"
		}
		return CommandReset, lx.dotted(w)
	case "prepare":
		// PREPARE TRANSACTION 'gid' against PREPARE transaction AS …, a statement named
		// "transaction": the grammar tells them apart by what follows the word.
		save := lx.i
		if lx.word() == "transaction" {
			if next := lx.word(); next != "as" && !lx.at('(') {
				return CommandPrepareTransaction, ""
			}
		}
		lx.i = save
		return CommandPrepare, ""
	case "execute":
		return CommandExecute, ""
	case "discard":
		if lx.word() == "all" && lx.end() {
			return CommandDiscardAll, ""
		}
	case "deallocate":
		w, quoted := lx.ident()
		if w == "prepare" && !quoted {
			w, quoted = lx.ident()
		}
		if w == "" || !lx.end() {
			return CommandOther, ""
		}
		if w == "all" && !quoted {
			return CommandDeallocateAll, ""
		}
		return CommandDeallocate, w
	}
	return CommandOther, ""
}

// channelName reads the channel of a LISTEN or UNLISTEN that is the whole query, as
// PostgreSQL names it: a bare word in lower case, a quoted one as written, either cut to
// 63 bytes. It returns "" when there is no name or more follows.
func channelName(lx *lexer) string {
	ch, _ := lx.ident()
	if ch == "" || !lx.end() {
		return ""
	}
	if len(ch) > maxIdentLen {
		ch = truncateIdent(ch)
	}
	return ch
}

// maxIdentLen is PostgreSQL's NAMEDATALEN - 1: longer identifiers are cut.
const maxIdentLen = 63

// truncateIdent cuts s to maxIdentLen bytes, not in the middle of a UTF-8 character.
func truncateIdent(s string) string {
	n := maxIdentLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// IsSetToDefault reports whether q is SET [SESSION] name TO DEFAULT (or = DEFAULT), or SET
// TIME ZONE DEFAULT or LOCAL: a RESET. SET LOCAL is not: it lasts until the transaction
// ends.
func IsSetToDefault(q string) bool {
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

// IsPlainBegin reports whether q is exactly a BEGIN with no options: BEGIN, BEGIN WORK or
// BEGIN TRANSACTION, in any case, with an optional semicolon.
func IsPlainBegin(q string) bool {
	if len(q) > 32 {
		return false
	}
	q = strings.TrimSpace(q)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	if len(q) < 5 || !strings.EqualFold(q[:5], "begin") {
		return false
	}
	rest := strings.TrimSpace(q[5:])
	if rest == "" {
		return len(q) == 5
	}
	if q[5] != ' ' && q[5] != '\t' && q[5] != '\n' && q[5] != '\r' {
		return false
	}
	return strings.EqualFold(rest, "work") || strings.EqualFold(rest, "transaction")
}
