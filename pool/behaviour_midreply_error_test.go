package pool_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// An ErrorResponse after some DataRows reaches the client in place, with the
// ReadyForQuery after it; the server goes back to the pool, and the next client gets it.
func TestBehaviourErrorMidReply(t *testing.T) {
	t.Parallel()
	failing := []pgproto3.BackendMessage{
		pgmock.RowDescription("n"), pgmock.DataRow("1"), pgmock.DataRow("2"),
		pgmock.Error("22012", "division by zero"), readyMsg('I'),
	}
	var key1, key2 pgmock.Key
	primary := pgmock.NewServer(t, pgmock.Options{})
	primary.Expect(
		pgmock.Do(func(c *pgmock.Conn) error { key1 = c.Key(); return nil }),
		pgmock.ExpectQuery("SELECT 2 / (2 - n) FROM t"),
		pgmock.Send(failing...),
		pgmock.ExpectQuery("SELECT 1"),
		pgmock.Send(pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')...),
	)
	addr := startPool(t, primary, nil) // one server connection
	first := connectClient(t, addr)
	first.send(&pgproto3.Query{String: "SELECT 2 / (2 - n) FROM t"})
	first.expect(failing...)

	second := connectClient(t, addr)
	second.send(&pgproto3.Query{String: "SELECT 1"})
	second.expect(pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')...)
	primary.Wait(behaviourTimeout)
	keys := primary.Keys()
	key2 = keys[len(keys)-1]
	if len(keys) != 1 || key1.ProcessID != key2.ProcessID {
		t.Errorf("server connections opened: %v, want the one that failed, reused", keys)
	}
}
