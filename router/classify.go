// Package router decides which backend runs a statement: it classifies SQL with the real
// PostgreSQL grammar, watches the replicas' health, lag and role, and balances reads. It
// holds no client sockets; the pool package asks it.
package router

import (
	"strconv"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Verdict is what the classifier knows about one query string. Verdicts are shared
// through the cache: treat them as read-only.
type Verdict struct {
	// Write is set when the query must run on the primary; Reason says why.
	Write  bool
	Reason string
	// Funcs lists the functions the query calls that are on neither built-in list; the
	// query may go to a replica only if none of them is volatile (see Volatility).
	Funcs []string

	// Transaction control in the query.
	Begin    bool // BEGIN or START TRANSACTION
	ReadOnly bool // ... READ ONLY, or SET TRANSACTION READ ONLY
	End      bool // COMMIT, ROLLBACK, END, ABORT

	// Hint is "primary" or "replica" from a /* cmpool:primary */ or /* cmpool:replica */
	// comment, else "".
	Hint string

	// ProxySet is a SET [LOCAL] cmpool.* the proxy answers itself; ProxyShow names a
	// SHOW cmpool.* it answers.
	ProxySet  *Setting
	ProxyShow string

	// Statements is how many statements the query string holds.
	Statements int

	// SessionOnly is set when Write is, but only because the query changes session
	// settings (SET, RESET): it writes no data, so it is no write for read-your-writes.
	SessionOnly bool

	// UntrackedSettings is set when the query may change session settings in a way its
	// text does not name: it calls set_config (not with is_local true), runs DO, LOAD,
	// EXECUTE or CREATE/ALTER EXTENSION, has a SET, RESET or DISCARD after its first
	// statement, or cannot be parsed (see settings.go). The functions in SettingFuncs may
	// change settings too.
	UntrackedSettings bool
	// OpaqueSettings is set when the query may set custom parameters it does not name
	// (in SettingNames): DO, LOAD, EXECUTE, CREATE/ALTER EXTENSION, set_config with a
	// computed name, or a query that cannot be parsed.
	OpaqueSettings bool
	// SettingNames are the parameter names the query gives as ones it may set:
	// set_config's literal first argument, names set after its first statement, and the
	// custom names (prefix.name) set in a DO block. SettingFuncs are the functions it calls that are on neither
	// built-in list (user-defined ones), by name without schema: their bodies may set
	// others.
	SettingNames, SettingFuncs []string
}

// Setting is a SET of one of cmpool's own parameters.
type Setting struct {
	Name  string // lower case, "cmpool.route"
	Value string
	Local bool
}

// Classifier classifies queries, caching verdicts by query text.
type Classifier struct {
	mu    sync.RWMutex
	cache map[string]*Verdict
	max   int
}

// NewClassifier returns a classifier whose cache holds up to size verdicts; 0 means 10000.
func NewClassifier(size int) *Classifier {
	if size <= 0 {
		size = 10000
	}
	return &Classifier{cache: make(map[string]*Verdict), max: size}
}

// Classify returns the verdict for a query string: one or more statements.
func (c *Classifier) Classify(sql string) *Verdict {
	c.mu.RLock()
	v, ok := c.cache[sql]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = classify(sql)
	c.mu.Lock()
	if len(c.cache) >= c.max {
		clear(c.cache) // simple and bounded; hot queries come back at once
	}
	c.cache[sql] = v
	c.mu.Unlock()
	return v
}

// ClassifyWithoutNumbers is Classify(WithoutNumbers(q)), for statements that differ only
// in numbers to share a verdict. The text without numbers is built on the stack (on the
// heap past numberlessStack bytes) and made a string only when its verdict is not cached
// yet: a statement run again with other numbers (pgbench's INSERT) allocates nothing.
func (c *Classifier) ClassifyWithoutNumbers(q string) *Verdict {
	var buf [numberlessStack]byte
	b, replaced := appendWithoutNumbers(buf[:0], q)
	if !replaced {
		return c.Classify(q)
	}
	c.mu.RLock()
	v, ok := c.cache[string(b)] // no copy made for the lookup
	c.mu.RUnlock()
	if ok {
		return v
	}
	return c.Classify(string(b))
}

// numberlessStack is the size of ClassifyWithoutNumbers' buffer on the stack.
const numberlessStack = 512

var plainRead = &Verdict{Statements: 1}

// classify does the work without the cache.
func classify(sql string) *Verdict {
	if isPlainSelect(sql) {
		return plainRead
	}
	return classifyFull(sql)
}

// classifyFull classifies with the full grammar.
func classifyFull(sql string) *Verdict {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return &Verdict{Write: true, Reason: "unparsable: " + err.Error(), Hint: commentHint(sql), Statements: 1, UntrackedSettings: true, OpaqueSettings: true}
	}
	v := &Verdict{Statements: len(tree.Stmts), Hint: commentHint(sql)}
	dataWrite := false
	for _, raw := range tree.Stmts {
		classifyStmt(v, raw.Stmt)
		if !dataWrite && raw.Stmt.GetVariableSetStmt() == nil && isWriteStmt(raw.Stmt) {
			dataWrite = true
		}
	}
	v.SessionOnly = v.Write && !dataWrite
	settingEffects(v, tree)
	return v
}

// isPlainSelect is the fast path: a lone SELECT with no function call, comment, literal,
// semicolon inside, INTO or FOR clause. Anything else takes the full parse.
func isPlainSelect(sql string) bool {
	s := strings.TrimSpace(sql)
	s = strings.TrimSuffix(s, ";")
	if len(s) < 7 || !strings.EqualFold(s[:6], "select") || !isSpace(s[6]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', ';', '\'', '"', '-', '/', '$':
			if s[i] == '$' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
				continue // a parameter placeholder
			}
			return false
		}
	}
	return !containsWordFold(s, "into") && !containsWordFold(s, "for")
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// containsWordFold reports whether s contains the lower-case word w as a whole word.
func containsWordFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if !strings.EqualFold(s[i:i+len(w)], w) {
			continue
		}
		before := i == 0 || !isWordByte(s[i-1])
		after := i+len(w) == len(s) || !isWordByte(s[i+len(w)])
		if before && after {
			return true
		}
	}
	return false
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= 0x80
}

// commentHint finds a cmpool:primary or cmpool:replica routing hint in a comment.
func commentHint(sql string) string {
	if !strings.Contains(sql, "cmpool:") {
		return ""
	}
	res, err := pg_query.Scan(sql)
	if err != nil {
		return ""
	}
	for _, tok := range res.Tokens {
		if tok.Token != pg_query.Token_C_COMMENT && tok.Token != pg_query.Token_SQL_COMMENT {
			continue
		}
		text := strings.ToLower(sql[tok.Start:tok.End])
		switch {
		case strings.Contains(text, "cmpool:primary"):
			return "primary"
		case strings.Contains(text, "cmpool:replica"):
			return "replica"
		}
	}
	return ""
}

// classifyStmt folds one statement's verdict into v.
func classifyStmt(v *Verdict, n *pg_query.Node) {
	switch {
	case n.GetSelectStmt() != nil:
		inspect(v, n)
	case n.GetVariableShowStmt() != nil:
		name := strings.ToLower(n.GetVariableShowStmt().Name)
		if strings.HasPrefix(name, "cmpool.") {
			v.ProxyShow = name
		}
	case n.GetExplainStmt() != nil:
		ex := n.GetExplainStmt()
		if explainAnalyze(ex.Options) {
			classifyStmt(v, ex.Query) // EXPLAIN ANALYZE runs the statement
		} else {
			inspect(v, ex.Query) // functions in a plain EXPLAIN are not run, but keep it simple
		}
	case n.GetCopyStmt() != nil:
		cp := n.GetCopyStmt()
		if cp.IsFrom || cp.IsProgram {
			write(v, "COPY FROM")
		} else if cp.Query != nil {
			inspect(v, cp.Query)
		}
	case n.GetTransactionStmt() != nil:
		ts := n.GetTransactionStmt()
		switch ts.Kind {
		case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
			v.Begin = true
			if readOnlyOption(ts.Options) {
				v.ReadOnly = true
			}
		case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT, pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
			v.End = true
		default:
			write(v, "transaction control "+ts.Kind.String())
		}
	case n.GetVariableSetStmt() != nil:
		vs := n.GetVariableSetStmt()
		name := strings.ToLower(vs.Name)
		switch {
		case strings.HasPrefix(name, "cmpool."):
			v.ProxySet = &Setting{Name: name, Value: constString(vs.Args), Local: vs.IsLocal}
		case name == "transaction" && readOnlyOption(vs.Args):
			v.ReadOnly = true
		default:
			write(v, "SET")
		}
	default:
		write(v, statementName(n))
	}
}

// inspect walks a read statement's tree for anything that writes or locks.
func inspect(v *Verdict, n *pg_query.Node) {
	if n == nil {
		return
	}
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.InsertStmt:
			write(v, "writable CTE (INSERT)")
		case *pg_query.UpdateStmt:
			write(v, "writable CTE (UPDATE)")
		case *pg_query.DeleteStmt:
			write(v, "writable CTE (DELETE)")
		case *pg_query.MergeStmt:
			write(v, "writable CTE (MERGE)")
		case *pg_query.LockingClause:
			write(v, "FOR UPDATE/SHARE")
		case *pg_query.IntoClause:
			write(v, "SELECT INTO")
		case *pg_query.FuncCall:
			name := funcName(x.Funcname)
			switch funcClass(name) {
			case funcWrites:
				write(v, "function "+name)
			case funcUnknown:
				if !contains(v.Funcs, name) {
					v.Funcs = append(v.Funcs, name)
				}
			}
		}
		return true
	})
}

// walk visits m and every message below it, depth first.
func walk(m protoreflect.Message, visit func(protoreflect.Message) bool) {
	if !visit(m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), visit)
			}
		case fd.IsMap():
		default:
			walk(val.Message(), visit)
		}
		return true
	})
}

func write(v *Verdict, reason string) {
	if !v.Write {
		v.Write, v.Reason = true, reason
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// funcName is a function's name as written, schema-qualified when it was.
func funcName(parts []*pg_query.Node) string {
	names := make([]string, 0, len(parts))
	for _, p := range parts {
		names = append(names, strings.ToLower(p.GetString_().GetSval()))
	}
	if len(names) == 2 && names[0] == "pg_catalog" {
		return names[1]
	}
	return strings.Join(names, ".")
}

// readOnlyOption reports whether transaction options include READ ONLY.
func readOnlyOption(opts []*pg_query.Node) bool {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.Defname != "transaction_read_only" {
			continue
		}
		if c := d.Arg.GetAConst(); c != nil {
			return c.GetIval().GetIval() == 1 || c.GetBoolval().GetBoolval()
		}
	}
	return false
}

// explainAnalyze reports whether EXPLAIN options include ANALYZE (not ANALYZE false).
func explainAnalyze(opts []*pg_query.Node) bool {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		if d.Arg == nil {
			return true
		}
		s := strings.ToLower(constValue(d.Arg))
		return s != "false" && s != "off" && s != "0"
	}
	return false
}

// constString renders SET arguments as the value a client meant: 'primary' or primary.
func constString(args []*pg_query.Node) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		parts = append(parts, constValue(a))
	}
	return strings.Join(parts, ",")
}

func constValue(n *pg_query.Node) string {
	if c := n.GetAConst(); c != nil {
		switch {
		case c.GetSval() != nil:
			return c.GetSval().GetSval()
		case c.GetIval() != nil:
			return strconv.Itoa(int(c.GetIval().GetIval()))
		case c.GetBoolval() != nil:
			if c.GetBoolval().GetBoolval() {
				return "true"
			}
			return "false"
		case c.GetFval() != nil:
			return c.GetFval().GetFval()
		}
	}
	if s := n.GetString_(); s != nil {
		return s.GetSval()
	}
	return ""
}

// statementName names a statement kind for Reason, e.g. "InsertStmt".
func statementName(n *pg_query.Node) string {
	m := n.ProtoReflect()
	if od := m.Descriptor().Oneofs().ByName("node"); od != nil {
		if fd := m.WhichOneof(od); fd != nil {
			return string(fd.Message().Name())
		}
	}
	return "statement"
}

// isWriteStmt reports whether a statement other than SET would be routed to the primary
// on its own.
func isWriteStmt(n *pg_query.Node) bool {
	v := &Verdict{}
	classifyStmt(v, n)
	return v.Write
}
