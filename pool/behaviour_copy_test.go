package pool_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// COPY FROM STDIN and COPY TO STDOUT pass through: the client's CopyData and CopyDone
// reach the server, and the server's reach the client, unchanged and in order.
func TestBehaviourCopy(t *testing.T) {
	t.Parallel()
	copyIn := &pgproto3.CopyInResponse{OverallFormat: 0, ColumnFormatCodes: []uint16{0, 0}}
	copyOut := &pgproto3.CopyOutResponse{OverallFormat: 0, ColumnFormatCodes: []uint16{0, 0}}
	rows := []*pgproto3.CopyData{{Data: []byte("1\tone\n")}, {Data: []byte("2\ttwo\n")}}
	primary := pgmock.NewServer(t, pgmock.Options{})
	primary.Expect(
		pgmock.ExpectQuery("COPY t FROM STDIN"),
		pgmock.Send(copyIn),
		pgmock.Expect(rows[0]),
		pgmock.Expect(rows[1]),
		pgmock.Expect(&pgproto3.CopyDone{}),
		pgmock.Send(completeMsg("COPY 2"), readyMsg('I')),

		pgmock.ExpectQuery("COPY t TO STDOUT"),
		pgmock.Send(copyOut, rows[0], rows[1], &pgproto3.CopyDone{}, completeMsg("COPY 2"), readyMsg('I')),
	)
	c := connectClient(t, startPool(t, primary, nil))

	c.send(&pgproto3.Query{String: "COPY t FROM STDIN"})
	c.expect(copyIn)
	c.send(rows[0])
	c.send(rows[1], &pgproto3.CopyDone{})
	c.expect(completeMsg("COPY 2"), readyMsg('I'))

	c.send(&pgproto3.Query{String: "COPY t TO STDOUT"})
	c.expect(copyOut, rows[0], rows[1], &pgproto3.CopyDone{}, completeMsg("COPY 2"), readyMsg('I'))
	primary.Wait(behaviourTimeout)
}
