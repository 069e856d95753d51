package pool

import "github.com/cmlite/cmpool/pool/internal/stmt"

// noopStmtName is never prepared: closing it is a no-op that yields CloseComplete.
const noopStmtName = stmt.Prefix + "noop"

// noopStmt stands for a name in cmpool's namespace that the client never prepared: it is
// sent as noopStmtName, which no server has, so the server reports 26000.
var noopStmt = &stmt.Stmt{Name: noopStmtName}

// What the relay does with a ParseComplete or CloseComplete.
const (
	replyForward      = iota // pass it on
	replyHide                // cmpool's own message: drop the reply
	replyAsParse             // a Close stood in for a Parse: send ParseComplete instead
	replyDupStatement        // a Parse that must fail with 42P05 naming the client's statement
)

// inflight is one Parse or Close sent to the server whose reply has not come back.
type inflight struct {
	action  int
	segment uint64     // how many Syncs and Queries were sent before it
	stmt    *stmt.Stmt // the statement a Parse (or stand-in Close) prepares
	client  string     // the client's name for stmt, if the client asked for it
}

// inflightQueue is a FIFO of in-flight Parses or Closes.
type inflightQueue struct {
	items []inflight
	head  int
}

func (q *inflightQueue) push(it inflight) { q.items = append(q.items, it) }

func (q *inflightQueue) pop() (inflight, bool) {
	if q.head >= len(q.items) {
		return inflight{}, false
	}
	it := q.items[q.head]
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return it, true
}

func (q *inflightQueue) peek() (inflight, bool) {
	if q.head >= len(q.items) {
		return inflight{}, false
	}
	return q.items[q.head], true
}

// dropSegment removes the entries of Sync segment seg (all at the front, since replies
// come in order) and passes each to drop.
func (q *inflightQueue) dropSegment(seg uint64, drop func(inflight)) {
	for q.head < len(q.items) && q.items[q.head].segment <= seg {
		drop(q.items[q.head])
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
}

func (q *inflightQueue) empty() bool { return q.head >= len(q.items) }

var parseCompleteMsg = []byte{'1', 0, 0, 0, 4}
