package stmt

import "github.com/cmlite/cmpool/protocol"

// What the relay does with a ParseComplete or CloseComplete.
const (
	replyForward      = iota // pass it on
	replyHide                // cmpool's own message: drop the reply
	replyAsParse             // a Close stood in for a Parse: send ParseComplete instead
	replyDupStatement        // a Parse that must fail with 42P05 naming the client's statement
	replyRefused             // a Parse cmpool refused: its error is replaced by the refusal
)

// inflight is one Parse or Close sent to the server whose reply has not come back.
type inflight struct {
	action  int
	segment uint64 // how many Syncs and Queries were sent before it
	stmt    *Stmt  // the statement a Parse (or stand-in Close) prepares
	client  string // the client's name for stmt, if the client asked for it
	// refusal is the error a refused Parse gets instead of the server's (Plan.Refuse).
	refusal *protocol.Error
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
