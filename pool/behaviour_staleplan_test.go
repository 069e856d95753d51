package pool_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// When the server fails a Bind with 0A000 "cached plan must not change result type",
// cmpool prepares the statement again under a new server-side name and retries the
// request once; the client sees only the retry's replies, with the new row shape.
func TestBehaviourStalePlanRetry(t *testing.T) {
	t.Parallel()
	const query = "SELECT * FROM t"
	describe := &pgproto3.Describe{ObjectType: 'P'}
	oldShape, newShape := pgmock.RowDescription("a"), pgmock.RowDescription("a", "b")
	var first, second string
	primary := pgmock.NewServer(t, pgmock.Options{})
	primary.Expect(
		serverStmt(query, &first),
		bindOf(&first),
		pgmock.Expect(describe),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(parseComplete, bindComplete, oldShape, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I')),

		// The table changed meanwhile.
		bindOf(&first),
		pgmock.Expect(describe),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(pgmock.Error("0A000", "cached plan must not change result type"), readyMsg('I')),

		serverStmt(query, &second),
		bindOf(&second),
		pgmock.Expect(describe),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(parseComplete, bindComplete, newShape, pgmock.DataRow("1", "2"), completeMsg("SELECT 1"), readyMsg('I')),
	)
	c := connectClient(t, startPool(t, primary, nil))

	c.send(&pgproto3.Parse{Name: "s1", Query: query}, syncMsg)
	c.expect(parseComplete, readyMsg('I'))
	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, describe, executeAll, syncMsg)
	c.expect(bindComplete, oldShape, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I'))

	c.send(&pgproto3.Bind{PreparedStatement: "s1"}, describe, executeAll, syncMsg)
	c.expect(bindComplete, newShape, pgmock.DataRow("1", "2"), completeMsg("SELECT 1"), readyMsg('I'))

	primary.Wait(behaviourTimeout)
	if second == first {
		t.Errorf("the retry prepared the statement under its old name %q", first)
	}
}
