package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Session settings a query may change without naming them.
//
// A pooler follows SET and RESET by their text, but set_config, a function or procedure
// body, a DO block or a loaded library change settings too. settingEffects marks such
// queries: calls of set_config (unless its is_local argument is the literal true), DO,
// LOAD, EXECUTE, CREATE or ALTER EXTENSION, and SET, RESET or DISCARD after the first
// statement of a query string; and it lists the functions called that are not known
// built-ins (user-defined ones, procedures named by CALL), whose bodies the pool judges.
// It cannot see functions run by triggers, rules, user-defined operators or casts, or
// column defaults.

// settingEffects fills v's UntrackedSettings, OpaqueSettings, SettingNames and
// SettingFuncs from tree.
func settingEffects(v *Verdict, tree *pg_query.ParseResult) {
	for i, raw := range tree.Stmts {
		n := raw.Stmt
		switch {
		case n.GetDoStmt() != nil:
			v.UntrackedSettings, v.OpaqueSettings = true, true // its code may compute names
			for _, a := range n.GetDoStmt().Args {
				if d := a.GetDefElem(); d != nil && d.Defname == "as" {
					v.addSettingNames(customParamNames(d.Arg.GetString_().GetSval()))
				}
			}
		case n.GetLoadStmt() != nil, n.GetExecuteStmt() != nil,
			n.GetCreateExtensionStmt() != nil, n.GetAlterExtensionStmt() != nil:
			v.UntrackedSettings, v.OpaqueSettings = true, true
		case n.GetVariableSetStmt() != nil:
			vs := n.GetVariableSetStmt()
			if i > 0 && !vs.IsLocal {
				v.UntrackedSettings = true
				name := strings.ToLower(vs.Name)
				if vs.Kind == pg_query.VariableSetKind_VAR_RESET_ALL || name == "" || strings.ContainsAny(name, " \"") {
					v.OpaqueSettings = true // RESET ALL, SET SESSION CHARACTERISTICS, …
				} else {
					v.addSettingNames([]string{name})
				}
			}
		case n.GetDiscardStmt() != nil:
			if i > 0 {
				v.UntrackedSettings, v.OpaqueSettings = true, true
			}
		}
		walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
			fc, ok := m.Interface().(*pg_query.FuncCall)
			if !ok {
				return true
			}
			name := funcName(fc.Funcname)
			switch {
			case name == "set_config":
				if len(fc.Args) == 3 && fc.Args[2].GetAConst().GetBoolval().GetBoolval() {
					return true // local to the transaction
				}
				v.UntrackedSettings = true
				var s *pg_query.String
				if len(fc.Args) > 0 {
					s = fc.Args[0].GetAConst().GetSval()
				}
				switch {
				case s == nil:
					v.OpaqueSettings = true // a name computed at run time
				default:
					v.addSettingNames([]string{strings.ToLower(s.Sval)})
				}
			case funcClass(name) == funcUnknown:
				if i := strings.LastIndexByte(name, '.'); i >= 0 {
					name = name[i+1:]
				}
				if !contains(v.SettingFuncs, name) {
					v.SettingFuncs = append(v.SettingFuncs, name)
				}
			}
			return true
		})
	}
}

func (v *Verdict) addSettingNames(names []string) {
	for _, n := range names {
		if !contains(v.SettingNames, n) {
			v.SettingNames = append(v.SettingNames, n)
		}
	}
}

// customParamNames finds the custom parameter names (prefix.name) a DO body may set: string constants that look like one (set_config's first argument) and the
// names after SET or RESET. The body is scanned as SQL, which PL/pgSQL resembles enough
// for this; a body that does not scan yields nothing.
func customParamNames(body string) []string {
	if body == "" {
		return nil
	}
	res, err := pg_query.Scan(body)
	if err != nil {
		return nil
	}
	var names []string
	toks := res.Tokens
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.Token {
		case pg_query.Token_SCONST:
			s := body[t.Start:t.End]
			if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' && isCustomParamName(s[1:len(s)-1]) {
				names = append(names, strings.ToLower(s[1:len(s)-1]))
			}
		case pg_query.Token_SET, pg_query.Token_RESET:
			j := i + 1
			if j < len(toks) && (toks[j].Token == pg_query.Token_SESSION || toks[j].Token == pg_query.Token_LOCAL) {
				j++
			}
			// prefix . name, as three tokens
			if j+2 < len(toks) && toks[j+1].Token == pg_query.Token_ASCII_46 {
				s := body[toks[j].Start:toks[j+2].End]
				if isCustomParamName(s) {
					names = append(names, strings.ToLower(s))
				}
			}
		}
	}
	return names
}

// isCustomParamName reports whether s is a plain prefix.name parameter name.
func isCustomParamName(s string) bool {
	dot := strings.IndexByte(s, '.')
	if dot <= 0 || dot == len(s)-1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == dot || c == '.' && i > dot {
			continue
		}
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (c >= '0' && c <= '9' || c == '$') && i > 0 && s[i-1] != '.') {
			return false
		}
	}
	return true
}
