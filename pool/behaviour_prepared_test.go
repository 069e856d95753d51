package pool_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// A client's statement name is mapped to a server-side name of cmpool's: the server gets
// the Parse under that name and the Bind of it, and the client sees its own replies.
// A server connection that lacks the statement gets its Parse replayed before the Bind.
func TestBehaviourPreparedNameMapping(t *testing.T) {
	t.Parallel()
	const query = "SELECT $1::int"
	primary := pgmock.NewServer(t, pgmock.Options{})
	var first, second string
	primary.Expect(
		serverStmt(query, &first),
		bindOf(&first),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(parseComplete, bindComplete, pgmock.DataRow("7"), completeMsg("SELECT 1"), readyMsg('I')),
	)
	// Every server connection is closed when it is returned: the second execution gets
	// a new one, which has never seen the statement.
	primary.Expect(
		serverStmt(query, &second),
		bindOf(&second),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(parseComplete, bindComplete, pgmock.DataRow("8"), completeMsg("SELECT 1"), readyMsg('I')),
	)
	addr := startPool(t, primary, func(c *pool.Config) { c.ServerLifetime = time.Nanosecond })
	c := connectClient(t, addr)

	c.send(&pgproto3.Parse{Name: "s1", Query: query})
	c.send(syncMsg)
	c.expect(parseComplete, readyMsg('I'))

	c.send(&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("7")}}, executeAll, syncMsg)
	c.expect(bindComplete, pgmock.DataRow("7"), completeMsg("SELECT 1"), readyMsg('I'))

	c.send(&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("8")}}, executeAll, syncMsg)
	c.expect(bindComplete, pgmock.DataRow("8"), completeMsg("SELECT 1"), readyMsg('I'))

	primary.Wait(behaviourTimeout)
	if first == "s1" || first != second {
		t.Errorf("server-side names: %q then %q, want one name of cmpool's for both", first, second)
	}
}
