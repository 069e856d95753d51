package pool_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// Several Parse/Bind/Execute runs under one Sync reach the server as sent, and their
// replies reach the client in order.
func TestBehaviourPipeline(t *testing.T) {
	t.Parallel()
	queries := []string{"SELECT 'a'", "SELECT 'b'", "SELECT 'c'"}
	var fromClient []pgproto3.FrontendMessage
	var steps []pgmock.Step
	var replies []pgproto3.BackendMessage
	for i, q := range queries {
		v := string(rune('a' + i))
		fromClient = append(fromClient, &pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, executeAll)
		steps = append(steps,
			pgmock.Expect(&pgproto3.Parse{Query: q}),
			pgmock.Expect(&pgproto3.Bind{}),
			pgmock.Expect(&pgproto3.Describe{ObjectType: 'P'}),
			pgmock.Expect(executeAll))
		replies = append(replies, parseComplete, bindComplete, pgmock.RowDescription("v"), pgmock.DataRow(v), completeMsg("SELECT 1"))
	}
	fromClient = append(fromClient, syncMsg)
	steps = append(steps, pgmock.Expect(syncMsg))
	replies = append(replies, readyMsg('I'))
	steps = append(steps, pgmock.Send(replies...))

	primary := pgmock.NewServer(t, pgmock.Options{})
	primary.Expect(steps...)
	c := connectClient(t, startPool(t, primary, nil))
	c.send(fromClient...)
	c.expect(replies...)
	primary.Wait(behaviourTimeout)
}
