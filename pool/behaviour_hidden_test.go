package pool_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// Replies to messages cmpool adds or rewrites are hidden or turned into the reply the
// client expects: the ParseComplete of a Parse the client did not send is hidden; a Parse
// of a statement the server already has goes as a no-op Close whose CloseComplete the
// client sees as ParseComplete; a client's Close of a statement goes as the same no-op
// Close (the server's copy may serve others) and the client gets its CloseComplete.
func TestBehaviourHiddenReplies(t *testing.T) {
	t.Parallel()
	const query = "SELECT 1"
	noopClose := &pgproto3.Close{ObjectType: 'S', Name: "cmpool_noop"}
	primary := pgmock.NewServer(t, pgmock.Options{})
	var name string
	primary.Expect(
		// s1's first execution: its Parse is sent ahead of the Bind.
		serverStmt(query, &name),
		bindOf(&name),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(parseComplete, bindComplete, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I')),

		// s2 is the same statement: the server already has it.
		pgmock.Expect(noopClose),
		bindOf(&name),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(closeComplete, bindComplete, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I')),

		// The client closes s1: the server keeps its copy.
		pgmock.Expect(noopClose),
		pgmock.Expect(syncMsg),
		pgmock.Send(closeComplete, readyMsg('I')),

		// s1 is gone: its Bind goes under the client's name, which no server has.
		pgmock.Expect(&pgproto3.Bind{PreparedStatement: "s1"}),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(pgmock.Error("26000", `prepared statement "s1" does not exist`), readyMsg('I')),

		// s2 still works on the server's copy.
		bindOf(&name),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(bindComplete, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I')),
	)
	c := connectClient(t, startPool(t, primary, nil))

	c.send(&pgproto3.Parse{Name: "s1", Query: query}, syncMsg)
	c.expect(parseComplete, readyMsg('I'))
	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, executeAll, syncMsg)
	c.expect(bindComplete, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I'))

	c.send(&pgproto3.Parse{Name: "s2", Query: query}, &pgproto3.Bind{PreparedStatement: "s2"}, executeAll, syncMsg)
	c.expect(parseComplete, bindComplete, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I'))

	c.send(&pgproto3.Close{ObjectType: 'S', Name: "s1"}, syncMsg)
	c.expect(closeComplete, readyMsg('I'))

	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, executeAll, syncMsg)
	c.expectError("26000")
	c.expect(readyMsg('I'))

	c.send(&pgproto3.Bind{PreparedStatement: "s2"}, executeAll, syncMsg)
	c.expect(bindComplete, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I'))

	primary.Wait(behaviourTimeout)
}
