package stmt_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/stmt"
)

// queryText returns the text of a Query message, checking its framing.
func queryText(t *testing.T, msg []byte) string {
	t.Helper()
	require.Equal(t, byte('Q'), msg[0])
	require.Equal(t, len(msg)-1, int(binary.BigEndian.Uint32(msg[1:5])))
	require.Equal(t, byte(0), msg[len(msg)-1])
	return string(msg[5 : len(msg)-1])
}

func TestSQLStmtNames(t *testing.T) {
	a := stmt.NewSQLStmt("(int)", "SELECT $1", 0)
	require.Equal(t, a, stmt.NewSQLStmt("(int)", "SELECT $1", 0), "the same text, the same server-side statement")
	require.NotEqual(t, a.Name, stmt.NewSQLStmt("(text)", "SELECT $1", 0).Name)
	require.NotEqual(t, a.Name, stmt.NewSQLStmt("", "SELECT $1", 0).Name)
	require.NotEqual(t, a.Name, stmt.NewSQLStmt("(int)", "SELECT $1", 1).Name, "after DDL, a new name")
	require.True(t, strings.HasPrefix(a.Name, "cmpool_sql_"))
	require.LessOrEqual(t, len(a.Name), 63)
	require.Equal(t, "PREPARE "+a.Name+" (int) AS SELECT $1\n", a.Prepare)
}

// sqlClient is one client planning SQL-level commands on the server it holds.
type sqlClient struct {
	names *stmt.Names
	plan  stmt.SQLPlan
}

func (c *sqlClient) scope(server *stmt.Prepared, seg uint64) stmt.Scope {
	return stmt.Scope{Names: c.names, Server: server, Segment: seg}
}

func TestSQLPlanPrepareAndExecute(t *testing.T) {
	server := stmt.NewPrepared(0)
	a := &sqlClient{names: new(stmt.Names)}
	st := stmt.NewSQLStmt("", "SELECT 1", 0)

	// A's PREPARE s: sent under cmpool's name; s maps once its CommandComplete came.
	q := queryText(t, a.plan.Command(nil, &stmt.SQLCommand{Query: "PREPARE s AS SELECT 1", Prepare: true, Client: "s", Stmt: st}, a.scope(server, 1)))
	require.Equal(t, st.Prepare, q)
	require.Nil(t, a.names.SQL("s"))
	require.True(t, a.plan.Pending())
	require.False(t, a.plan.CommandComplete(a.scope(server, 0)), "a reply of an earlier query is not this one")
	require.False(t, a.plan.CommandComplete(a.scope(server, 1)), "the client's own PREPARE is shown")
	require.Equal(t, st, a.names.SQL("s"))
	require.True(t, a.names.Has("s"))
	require.True(t, server.HasSQL(st))
	a.plan.Answered(1)
	require.False(t, a.plan.Pending())

	// EXECUTE s on the server that has it: only the name changes.
	exec := &stmt.SQLCommand{Query: `EXECUTE"s"(1)`, Client: "s", Stmt: st, NameStart: 7, NameEnd: 10}
	q = queryText(t, a.plan.Command(nil, exec, a.scope(server, 2)))
	require.Equal(t, "EXECUTE "+st.Name+" (1)", q)
	require.False(t, a.plan.CommandComplete(a.scope(server, 2)), "the EXECUTE's reply is shown")
	a.plan.Answered(2)
	require.False(t, a.plan.Pending())

	// The server lost it where cmpool could not see (DEALLOCATE ALL in a function): the
	// EXECUTE's 26000 naming it drops the record, and the next EXECUTE prepares it again.
	a.plan.Command(nil, exec, a.scope(server, 5))
	a.plan.Error(errorResponse("42601", "syntax error"), a.scope(server, 5))
	require.True(t, server.HasSQL(st), "another error says nothing of the statement")
	a.plan.Error(errorResponse("26000", `prepared statement "`+st.Name+`" does not exist`), a.scope(server, 5))
	a.plan.Answered(5)
	require.False(t, server.HasSQL(st))
	q = queryText(t, a.plan.Command(nil, exec, a.scope(server, 6)))
	require.Equal(t, st.Prepare+";\nEXECUTE "+st.Name+" (1)", q)
	a.plan.Answered(6)
	server.Clear()
	a.plan.Command(nil, &stmt.SQLCommand{Prepare: true, Client: "s", Stmt: st}, a.scope(server, 7))
	a.plan.CommandComplete(a.scope(server, 7))
	a.plan.Answered(7)

	// On another server: prepared first, its CommandComplete hidden.
	other := stmt.NewPrepared(0)
	q = queryText(t, a.plan.Command(nil, exec, a.scope(other, 3)))
	require.Equal(t, st.Prepare+";\nEXECUTE "+st.Name+" (1)", q)
	require.True(t, a.plan.CommandComplete(a.scope(other, 3)))
	require.True(t, other.HasSQL(st))
	require.False(t, a.plan.CommandComplete(a.scope(other, 3)), "the EXECUTE's own reply is shown")
	a.plan.Answered(3)

	// A prepare that fails (an ErrorResponse, then ReadyForQuery) is not recorded.
	third := stmt.NewPrepared(0)
	a.plan.Command(nil, exec, a.scope(third, 4))
	a.plan.Answered(4)
	require.False(t, a.plan.Pending())
	require.False(t, third.HasSQL(st))

	// DISCARD ALL on the server forgets it there.
	other.Clear()
	require.False(t, other.HasSQL(st))
	require.Equal(t, 0, other.SQLLen())
}

func TestSQLPlanPrepareOnServerThatHasIt(t *testing.T) {
	server := stmt.NewPrepared(0)
	st := stmt.NewSQLStmt("(int)", "SELECT $1", 0)
	a := &sqlClient{names: new(stmt.Names)}
	a.plan.Command(nil, &stmt.SQLCommand{Prepare: true, Client: "x", Stmt: st}, a.scope(server, 1))
	a.plan.CommandComplete(a.scope(server, 1))
	a.plan.Answered(1)

	// B prepares the same text on the same server: it is deallocated first (hidden), so
	// that the server checks the text again and answers B's PREPARE itself.
	b := &sqlClient{names: new(stmt.Names)}
	q := queryText(t, b.plan.Command(nil, &stmt.SQLCommand{Prepare: true, Client: "y", Stmt: st}, b.scope(server, 1)))
	require.Equal(t, "DEALLOCATE "+st.Name+";\n"+st.Prepare, q)
	require.True(t, b.plan.CommandComplete(b.scope(server, 1)))
	require.False(t, server.HasSQL(st))
	// The PREPARE fails (the text no longer holds): nothing maps, the server lacks it.
	b.plan.Answered(1)
	require.Nil(t, b.names.SQL("y"))
	require.False(t, server.HasSQL(st))
	require.Equal(t, st, a.names.SQL("x"), "A's name stays")
	require.Nil(t, a.names.SQL("y"))

	// Again, succeeding.
	q = queryText(t, b.plan.Command(nil, &stmt.SQLCommand{Prepare: true, Client: "y", Stmt: st}, b.scope(server, 2)))
	require.Equal(t, st.Prepare, q)
	require.False(t, b.plan.CommandComplete(b.scope(server, 2)))
	require.Equal(t, st, b.names.SQL("y"))
	require.Nil(t, b.names.SQL("x"), "names are per client")
}

func TestSQLNamesForget(t *testing.T) {
	server := stmt.NewPrepared(0)
	c := &sqlClient{names: new(stmt.Names)}
	for i, name := range []string{"a", "B"} {
		st := stmt.NewSQLStmt("", "SELECT "+name, 0)
		c.plan.Command(nil, &stmt.SQLCommand{Prepare: true, Client: name, Stmt: st}, c.scope(server, uint64(i+1)))
		c.plan.CommandComplete(c.scope(server, uint64(i+1)))
	}
	require.True(t, c.names.Has("B"))
	require.False(t, c.names.Has("b"))
	require.True(t, c.names.Forget("a"))
	require.False(t, c.names.Forget("a"))
	require.Nil(t, c.names.SQL("a"))
	c.names.ForgetAll()
	require.False(t, c.names.Has("B"))
	require.Equal(t, 2, server.SQLLen(), "the server's copies stay, for whoever prepares the text next")
}

func TestSQLErrors(t *testing.T) {
	require.Equal(t, "26000", stmt.NotFound("x").Code)
	require.Equal(t, `prepared statement "x" does not exist`, stmt.NotFound("x").Message)
	require.Equal(t, "42P05", stmt.Duplicate("x").Code)
}

func TestSQLPlanEvicts(t *testing.T) {
	server := stmt.NewPrepared(1)
	c := &sqlClient{names: new(stmt.Names)}
	a, b := stmt.NewSQLStmt("", "SELECT 'a'", 0), stmt.NewSQLStmt("", "SELECT 'b'", 0)
	c.plan.Command(nil, &stmt.SQLCommand{Prepare: true, Client: "a", Stmt: a}, c.scope(server, 1))
	c.plan.CommandComplete(c.scope(server, 1))
	c.plan.Answered(1)
	c.plan.Command(nil, &stmt.SQLCommand{Prepare: true, Client: "b", Stmt: b}, c.scope(new(stmt.Prepared), 2))
	c.plan.CommandComplete(c.scope(server, 2)) // maps b; it lands on the server below
	c.plan.Answered(2)
	server.Clear()
	c.plan.Command(nil, &stmt.SQLCommand{Query: "EXECUTE a", Client: "a", Stmt: a, NameStart: 8, NameEnd: 9}, c.scope(server, 3))
	require.True(t, c.plan.CommandComplete(c.scope(server, 3)))
	c.plan.CommandComplete(c.scope(server, 3))
	c.plan.Answered(3)
	require.Equal(t, 1, server.SQLLen())

	// The server keeps one: B's EXECUTE deallocates A's statement first.
	q := queryText(t, c.plan.Command(nil, &stmt.SQLCommand{Query: "EXECUTE b", Client: "b", Stmt: b, NameStart: 8, NameEnd: 9}, c.scope(server, 4)))
	require.Equal(t, "DEALLOCATE "+a.Name+";\n"+b.Prepare+";\nEXECUTE  "+b.Name+" ", q)
	require.True(t, c.plan.CommandComplete(c.scope(server, 4)))
	require.True(t, c.plan.CommandComplete(c.scope(server, 4)))
	require.False(t, c.plan.CommandComplete(c.scope(server, 4)))
	c.plan.Answered(4)
	require.False(t, server.HasSQL(a))
	require.True(t, server.HasSQL(b))
	require.Equal(t, 1, server.SQLLen())
}
