package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TempObject reports the first temporary object the query string creates that can outlive
// its transaction, such as "temporary table t", or "" when it creates none. A temporary
// table created ON COMMIT DROP cannot outlive its transaction and is not reported. Temporary
// objects are: CREATE TEMP/TEMPORARY TABLE (also AS), SELECT … INTO TEMP, CREATE TEMP VIEW,
// CREATE TEMP SEQUENCE, and any table, view, sequence, function, procedure, type or domain
// created in the pg_temp schema. A query the grammar does not accept reports "": the server
// refuses it anyway. What a function body or a DO block creates is invisible here.
func TempObject(sql string) string {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return ""
	}
	for _, raw := range tree.Stmts {
		if what := tempObject(raw.Stmt); what != "" {
			return what
		}
	}
	return ""
}

// tempObject returns what TempObject reports for one statement.
func tempObject(n *pg_query.Node) string {
	var found string
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		if found != "" {
			return false
		}
		switch x := m.Interface().(type) {
		case *pg_query.CreateStmt:
			if isTempRelation(x.Relation) && x.Oncommit != pg_query.OnCommitAction_ONCOMMIT_DROP {
				found = "temporary table " + x.Relation.Relname
			}
		case *pg_query.IntoClause: // CREATE TABLE … AS, SELECT … INTO
			if isTempRelation(x.Rel) && x.OnCommit != pg_query.OnCommitAction_ONCOMMIT_DROP {
				found = "temporary table " + x.Rel.Relname
			}
		case *pg_query.ViewStmt:
			if isTempRelation(x.View) {
				found = "temporary view " + x.View.Relname
			}
		case *pg_query.CreateSeqStmt:
			if isTempRelation(x.Sequence) {
				found = "temporary sequence " + x.Sequence.Relname
			}
		case *pg_query.CompositeTypeStmt:
			if isTempRelation(x.Typevar) {
				found = "temporary type " + x.Typevar.Relname
			}
		case *pg_query.CreateFunctionStmt:
			if name, ok := tempName(x.Funcname); ok {
				found = "temporary function " + name
			}
		case *pg_query.CreateEnumStmt:
			if name, ok := tempName(x.TypeName); ok {
				found = "temporary type " + name
			}
		case *pg_query.CreateRangeStmt:
			if name, ok := tempName(x.TypeName); ok {
				found = "temporary type " + name
			}
		case *pg_query.CreateDomainStmt:
			if name, ok := tempName(x.Domainname); ok {
				found = "temporary domain " + name
			}
		case *pg_query.DefineStmt:
			if name, ok := tempName(x.Defnames); ok {
				found = "temporary object " + name
			}
		}
		return found == ""
	})
	return found
}

// isTempRelation reports whether a relation being created is temporary: declared TEMP or
// TEMPORARY, or placed in the pg_temp schema.
func isTempRelation(rv *pg_query.RangeVar) bool {
	return rv != nil && (rv.Relpersistence == "t" || isTempSchema(rv.Schemaname))
}

// tempName reports whether a qualified name is in the pg_temp schema, and the name.
func tempName(parts []*pg_query.Node) (string, bool) {
	if len(parts) < 2 {
		return "", false
	}
	schema := parts[len(parts)-2].GetString_().GetSval()
	return parts[len(parts)-1].GetString_().GetSval(), isTempSchema(schema)
}

// isTempSchema reports whether a schema name (as the grammar gives it: unquoted names in
// lower case) names the session's temporary schema.
func isTempSchema(s string) bool {
	return s == "pg_temp" || strings.HasPrefix(s, "pg_temp_")
}
