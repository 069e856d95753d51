package pool_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// When the server fails a Bind with 0A000 "cached plan must not change result type",
// cmpool prepares the statement again under a new server-side name and retries the
// request once; the client sees only the retry's replies, with the new row shape. In
// session mode the failing request is not the lease's first: what the lease answered
// before it does not count.
func TestBehaviourStalePlanRetry(t *testing.T) {
	t.Parallel()
	for _, mode := range []pool.Mode{pool.ModeTransaction, pool.ModeSession} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			testStalePlanRetry(t, mode)
		})
	}
}

func testStalePlanRetry(t *testing.T, mode pool.Mode) {
	const query = "SELECT * FROM t"
	describe := &pgproto3.Describe{ObjectType: 'P'}
	oldShape, newShape := pgmock.RowDescription("a"), pgmock.RowDescription("a", "b")
	var first, second string
	primary := pgmock.NewServer(t, pgmock.Options{})
	// In transaction mode the Parse waits for the Bind that needs a server; in session
	// mode the client's server has it at once.
	prepare := []pgmock.Step{serverStmt(query, &first)}
	firstReply := []pgproto3.BackendMessage{parseComplete, bindComplete}
	if mode == pool.ModeSession {
		prepare = append(prepare, pgmock.Expect(syncMsg), pgmock.Send(parseComplete, readyMsg('I')))
		firstReply = firstReply[1:]
	}
	firstReply = append(firstReply, oldShape, pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I'))
	primary.Expect(append(prepare,
		bindOf(&first),
		pgmock.Expect(describe),
		pgmock.Expect(executeAll),
		pgmock.Expect(syncMsg),
		pgmock.Send(firstReply...),

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
	)...)
	c := connectClient(t, startPool(t, primary, func(cfg *pool.Config) { cfg.PoolMode = mode }))

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
