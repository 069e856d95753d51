package lease

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// Deferred BEGIN.
//
// In transaction mode a plain BEGIN sent on its own, with no server held, is answered by
// cmpool (CommandComplete "BEGIN", ReadyForQuery 'T') and sent to the server later, in the
// same write as the transaction's first statement; the server's two replies to it are
// dropped. The transaction then holds its server one round trip less, and the server and
// cmpool each handle one message less: pgbench's TPC-B sends BEGIN alone before its five
// statements and END. Only a BEGIN that cannot fail on an idle server is deferred: BEGIN,
// BEGIN WORK or BEGIN TRANSACTION, with no options, comments or other statements, and not
// when a Config.Router hook is set (it would see the next statement instead of the BEGIN).
// The transaction goes to the primary, as a plain BEGIN always does.
//
// While the BEGIN is deferred the client holds no server: idle_transaction_timeout applies
// as usual, and a drain may close the client (nothing has run in its transaction). If no
// server can be had for the first statement, the client gets the error and ReadyForQuery
// 'I': the transaction is over, as if the server had ended it.

// beginQuery is the BEGIN cmpool sends ahead of the transaction's first statement.
var beginQuery = func() []byte {
	b, _ := (&pgproto3.Query{String: "BEGIN"}).Encode(nil)
	return b
}()

// beginReply is the server's reply to a plain BEGIN on an idle connection.
var beginReply = func() []byte {
	b, _ := (&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}).Encode(nil)
	return protocol.AppendReadyForQuery(b, 'T')
}()

// DeferBegin answers a plain BEGIN locally when it can be deferred; it reports whether it
// did. The client goroutine calls it for each simple query before it needs a server.
func (c *Client) DeferBegin(q string) (bool, error) {
	if c.Mode != Transaction || c.BeginDeferred || c.Stmts.HasDeferred() || !router.IsPlainBegin(q) ||
		c.Host.Config().RouterHook || c.CurrentLease() != nil {
		return false, nil
	}
	if err := c.Conn.FR.Skip(); err != nil {
		return true, err
	}
	c.BeginDeferred = true
	if err := c.Conn.WriteLocal(beginReply); err != nil {
		return true, err
	}
	c.ArmIdleTimeout(true)
	return true, nil
}

// sendBegin sends the deferred BEGIN on l, ahead of the message that needed the server.
// Its replies are dropped by the relay (hiddenBegin).
func (l *Lease) sendBegin() {
	c := l.c
	c.BeginDeferred = false
	c.Mu.Lock()
	l.account('Q')
	l.hiddenBegin = true
	c.Mu.Unlock()
	l.wmu.Lock()
	if _, err := l.sc.Writer.Write(beginQuery); err != nil {
		c.Log.Debug("write to server failed", "error", err)
	}
	l.wmu.Unlock()
}

// relayHiddenBegin handles a server message while the reply to a deferred BEGIN is due:
// its CommandComplete and ReadyForQuery are dropped (the client had them from cmpool).
// handled is false for anything else, which is relayed as usual. The caller holds c.client.wmu.
func (l *Lease) relayHiddenBegin(fr protocol.Frame) (step relayStep, handled bool, err error) {
	c := l.c
	switch fr.Type {
	case 'C':
		if _, err := l.sc.Frames.Message(); err != nil {
			return stepFailed, true, err
		}
		return stepHidden, true, nil
	case 'Z':
		msg, err := l.sc.Frames.Message()
		if err != nil || len(msg) != 6 {
			return stepFailed, true, errMalformedReady
		}
		c.Mu.Lock()
		l.noteAnswer(msg[5])
		l.hiddenBegin = false
		c.Mu.Unlock()
		return stepHidden, true, nil
	case 'E':
		// A BEGIN on an idle server fails only when the server is going away.
		return stepFailed, true, errBeginFailed
	}
	return stepContinue, false, nil
}

var (
	errMalformedReady = errors.New("malformed ReadyForQuery")
	errBeginFailed    = errors.New("the server refused a deferred BEGIN")
)
