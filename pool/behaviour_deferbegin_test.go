package pool_test

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// A plain BEGIN with no server held is answered by cmpool, and reaches the server in
// the same write as the transaction's first statement; the server's replies to it are
// not passed on.
func TestBehaviourDeferredBegin(t *testing.T) {
	t.Parallel()
	answered := make(chan struct{}) // closed once the client had its reply to BEGIN
	primary := pgmock.NewServer(t, pgmock.Options{})
	primary.Expect(
		pgmock.ExpectQuery("BEGIN"),
		pgmock.Do(func(*pgmock.Conn) error {
			select {
			case <-answered:
				return nil
			default:
				return errors.New("BEGIN reached the server before the client had its reply")
			}
		}),
		pgmock.ExpectQuery("SELECT 1"),
		pgmock.Send(completeMsg("BEGIN"), readyMsg('T')),
		pgmock.Send(pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'T')...),
		pgmock.ExpectQuery("COMMIT"),
		pgmock.Send(completeMsg("COMMIT"), readyMsg('I')),
	)
	c := connectClient(t, startPool(t, primary, nil))

	c.send(&pgproto3.Query{String: "BEGIN"})
	c.expect(completeMsg("BEGIN"), readyMsg('T'))
	close(answered)

	c.send(&pgproto3.Query{String: "SELECT 1"})
	c.expect(pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'T')...)
	c.send(&pgproto3.Query{String: "COMMIT"})
	c.expect(completeMsg("COMMIT"), readyMsg('I'))
	primary.Wait(behaviourTimeout)
}
