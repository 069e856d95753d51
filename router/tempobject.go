package router

import (
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TempObject reports the first temporary object the query string creates that can outlive
// it, such as "temporary table t", or "" when it creates none. Temporary objects are:
// CREATE TEMP/TEMPORARY TABLE (also AS), SELECT … INTO TEMP, CREATE TEMP VIEW, CREATE TEMP
// SEQUENCE, and any table, view, sequence, function, procedure, type or domain created in
// the pg_temp schema. A table created ON COMMIT DROP cannot outlive its transaction, nor an
// object a later statement of the same string drops (DROP TABLE t after CREATE TEMP TABLE
// t): neither is reported. A query the grammar does not accept reports "": the server
// refuses it anyway. What a function body or a DO block creates is invisible here.
func TempObject(sql string) string {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return ""
	}
	var alive []tempObj
	for _, raw := range tree.Stmts {
		if drop := raw.Stmt.GetDropStmt(); drop != nil {
			alive = slices.DeleteFunc(alive, func(o tempObj) bool { return drops(drop, o) })
			continue
		}
		if o, ok := tempObject(raw.Stmt); ok {
			alive = append(alive, o)
		}
	}
	if len(alive) == 0 {
		return ""
	}
	return "temporary " + alive[0].kind + " " + alive[0].name
}

// tempObj is a temporary object a statement creates.
type tempObj struct {
	kind string // "table", "view", "sequence", "function", "type", "domain" or "object"
	name string
}

// dropKinds are the DROP statements that drop each kind of temporary object.
var dropKinds = map[pg_query.ObjectType]string{
	pg_query.ObjectType_OBJECT_TABLE: "table", pg_query.ObjectType_OBJECT_VIEW: "view",
	pg_query.ObjectType_OBJECT_SEQUENCE: "sequence", pg_query.ObjectType_OBJECT_TYPE: "type",
	pg_query.ObjectType_OBJECT_DOMAIN: "domain", pg_query.ObjectType_OBJECT_FUNCTION: "function",
	pg_query.ObjectType_OBJECT_PROCEDURE: "function",
}

// drops reports whether a DROP statement names temporary object o: by its name alone, or
// qualified with pg_temp.
func drops(d *pg_query.DropStmt, o tempObj) bool {
	if dropKinds[d.RemoveType] != o.kind {
		return false
	}
	for _, obj := range d.Objects {
		var parts []*pg_query.Node
		switch {
		case obj.GetList() != nil:
			parts = obj.GetList().Items
		case obj.GetTypeName() != nil:
			parts = obj.GetTypeName().Names
		case obj.GetObjectWithArgs() != nil:
			parts = obj.GetObjectWithArgs().Objname
		}
		n := len(parts)
		if n == 0 || parts[n-1].GetString_().GetSval() != o.name {
			continue
		}
		if n == 1 || n == 2 && isTempSchema(parts[0].GetString_().GetSval()) {
			return true
		}
	}
	return false
}

// tempObject returns the temporary object one statement creates that can outlive its
// transaction, if any.
func tempObject(n *pg_query.Node) (tempObj, bool) {
	var found *tempObj
	set := func(kind, name string) { found = &tempObj{kind, name} }
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		if found != nil {
			return false
		}
		switch x := m.Interface().(type) {
		case *pg_query.CreateStmt:
			if isTempRelation(x.Relation) && x.Oncommit != pg_query.OnCommitAction_ONCOMMIT_DROP {
				set("table", x.Relation.Relname)
			}
		case *pg_query.IntoClause: // CREATE TABLE … AS, SELECT … INTO
			if isTempRelation(x.Rel) && x.OnCommit != pg_query.OnCommitAction_ONCOMMIT_DROP {
				set("table", x.Rel.Relname)
			}
		case *pg_query.ViewStmt:
			if isTempRelation(x.View) {
				set("view", x.View.Relname)
			}
		case *pg_query.CreateSeqStmt:
			if isTempRelation(x.Sequence) {
				set("sequence", x.Sequence.Relname)
			}
		case *pg_query.CompositeTypeStmt:
			if isTempRelation(x.Typevar) {
				set("type", x.Typevar.Relname)
			}
		case *pg_query.CreateFunctionStmt:
			if name, ok := tempName(x.Funcname); ok {
				set("function", name)
			}
		case *pg_query.CreateEnumStmt:
			if name, ok := tempName(x.TypeName); ok {
				set("type", name)
			}
		case *pg_query.CreateRangeStmt:
			if name, ok := tempName(x.TypeName); ok {
				set("type", name)
			}
		case *pg_query.CreateDomainStmt:
			if name, ok := tempName(x.Domainname); ok {
				set("domain", name)
			}
		case *pg_query.DefineStmt:
			if name, ok := tempName(x.Defnames); ok {
				set("object", name)
			}
		}
		return found == nil
	})
	if found == nil {
		return tempObj{}, false
	}
	return *found, true
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
