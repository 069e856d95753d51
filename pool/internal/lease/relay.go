package lease

import (
	"errors"
	"fmt"
	"net"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
)

// Who relays a lease's replies.
//
// A relay goroutine copies the server's replies to the client while the client goroutine
// goes on reading the client, which pipelines, COPY and transactions need. But most
// leases are one request and its reply: for those the client goroutine relays the reply
// itself, and no goroutine is started and woken per transaction. relayAfter runs after
// each message sent: a Query or Sync with nothing more from the client is relayed on the
// client goroutine, until the lease ends or it needs the client again (a ReadyForQuery
// that does not end the lease, or COPY FROM STDIN); then a relay goroutine takes over the
// rest of the lease. Whenever the client goroutine may block reading the client, a relay
// goroutine runs (ensureRelay), so replies are never left unread.

// relayAfter relays l's replies on the client goroutine when the message of type typ
// just sent is the last of a request.
//
// On an event loop (pool/internal/reactor), the inline relay may also be suspended while
// the server has not answered: relayAfter then returns ErrSuspended, the client's
// goroutine returns without touching the client again, and ResumeRelay goes on when the
// server's reply arrives.
func (l *Lease) relayAfter(typ byte) error {
	c := l.c
	if l.awaited {
		l.awaited = false // send started the inline relay (repliesInline)
		return l.relayInline()
	}
	if c.unrelayed != l || typ != 'Q' && typ != 'S' {
		return nil
	}
	if c.Conn.FR.Buffered() > 0 {
		// A pipeline: its replies are relayed while the rest of it is sent, so that a
		// write to the server never waits for replies nobody reads.
		c.EnsureRelay()
		return nil
	}
	l.startInline()
	return l.relayInline()
}

// startInline makes the client goroutine l's relay: l is relaying, inline.
func (l *Lease) startInline() {
	c := l.c
	c.unrelayed = nil
	l.done = relayDone
	c.Mu.Lock()
	l.to(leaseRelaying)
	c.Mu.Unlock()
}

// ErrSuspended is returned up the client goroutine's stack when its inline relay, or its
// wait for the client's next message, is suspended on an event loop: the goroutine must
// return at once, without touching the client, which a loop may already be running.
var ErrSuspended = errors.New("lease: suspended on an event loop")

// relayInline relays l's replies on the client goroutine (relayAfter, ResumeRelay).
func (l *Lease) relayInline() error {
	c := l.c
	switch l.relayLoop(true) {
	case relayHandOff:
		l.done = make(chan struct{})
		go l.relay()
	case relayPark:
		// Idle in a transaction: the next request of the transaction is relayed inline
		// too. Nothing reads the server until then; a server that fails meanwhile is seen
		// at that request.
		c.unrelayed = l
	case relaySuspend:
		return ErrSuspended
	}
	return nil
}

// ResumeRelay goes on with the inline relay suspended on an event loop (relayAfter). It
// returns ErrSuspended when the relay is suspended again.
func (c *Client) ResumeRelay() error {
	l := c.suspended
	c.suspended = nil
	return l.relayInline()
}

// relayDone is the done channel of leases relayed on the client goroutine.
var relayDone = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// EnsureRelay starts a relay goroutine for the current lease if nothing relays its
// replies yet. The client goroutine calls it, without c.mu.
func (c *Client) EnsureRelay() {
	if c.unrelayed != nil {
		c.Mu.Lock()
		c.ensureRelayLocked()
		c.Mu.Unlock()
	}
}

// ensureRelayLocked is ensureRelay for the client goroutine holding c.mu.
func (c *Client) ensureRelayLocked() {
	if l := c.unrelayed; l != nil {
		c.unrelayed = nil
		l.to(leaseRelaying)
		l.done = make(chan struct{})
		go l.relay()
	}
}

// relay copies the server's replies to the client until the lease ends.
func (l *Lease) relay() {
	defer close(l.done)
	l.relayLoop(false)
}

// relayLoop copies the server's replies to the client until the lease ends. On the client
// goroutine (inline), it returns early once the lease needs the client again, with
// everything relayed so far flushed: relayPark when the lease is idle in a transaction
// in transaction mode (the server owes nothing), relayHandOff when a relay goroutine must
// go on with the lease (COPY FROM STDIN, or a ReadyForQuery that keeps the lease in
// session mode, where the server may send notifications at any time).
func (l *Lease) relayLoop(inline bool) (exit relayExit) {
	c := l.c
	holdingW := false // this goroutine holds c.client.wmu
	defer func() {
		if p := recover(); p != nil {
			l.relayPanicked(p, holdingW)
			exit = relayDoneExit
		}
	}()
	for {
		if inline && c.OnLoops && l.queryTimeout == 0 && !l.sc.Frames.FrameBuffered() {
			// Nothing to relay until the server sends more: an event loop may run the
			// rest when it does. c.suspended is set first: once suspended, c is not ours.
			c.suspended = l
			if c.Host.WaitServer(l) {
				return relaySuspend
			}
			c.suspended = nil
		}
		fr, err := l.sc.Frames.Next()
		if err != nil {
			l.relayFailed(err)
			return relayDoneExit
		}
		c.Conn.WMu.Lock()
		holdingW = true
		step, status, err := l.relayOne(fr)
		if step == stepHidden {
			holdingW = false
			c.Conn.WMu.Unlock()
			continue
		}
		if inline && step == stepContinue && (fr.Type == 'Z' || fr.Type == 'G' || fr.Type == 'W') {
			ferr := c.Conn.W.Flush()
			holdingW = false
			c.Conn.WMu.Unlock()
			l.reportReady()
			if ferr != nil {
				l.clientGone()
				return relayDoneExit
			}
			if fr.Type == 'Z' && c.Mode == Transaction && l.park() {
				return relayPark
			}
			return relayHandOff
		}
		holdingW = false
		c.Conn.WMu.Unlock()
		l.reportReady()
		switch step {
		case stepContinue:
			continue
		case stepEnd:
			l.finishLease()
		case stepFailed:
			l.relayFailed(err)
		case stepClientGone:
			l.clientGone()
		case stepTransactionBlock:
			l.refuseTransactionBlock(status)
		}
		return relayDoneExit
	}
}

// relayExit is how an inline relayLoop ended.
type relayExit int

const (
	relayDoneExit relayExit = iota // the lease ended, or failed
	relayHandOff                   // a relay goroutine must go on
	relayPark                      // idle in a transaction: relay the next request inline
	relaySuspend                   // suspended on an event loop until the server sends more
)

// park moves l to parked if it is still the client's lease, relaying, with no request
// outstanding; it reports whether it did.
func (l *Lease) park() bool {
	c := l.c
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.Lease != l || l.pending != 0 || l.unsynced || l.state != leaseRelaying {
		return false
	}
	l.to(leaseParked)
	return true
}

// relayStep is what the relay does after one server message.
type relayStep int

const (
	stepContinue         relayStep = iota // keep relaying
	stepEnd                               // the lease ended cleanly: return the server
	stepFailed                            // the server failed
	stepClientGone                        // the client cannot be written to
	stepTransactionBlock                  // statement mode saw a transaction begin
	stepStop                              // already handled: just stop
	stepHidden                            // a reply to cmpool's own message, dropped: keep relaying
)

// relayOne passes one server message to the client. The caller holds c.client.wmu.
func (l *Lease) relayOne(fr protocol.Frame) (relayStep, byte, error) {
	c := l.c
	if f := c.Host.RelayFault(); f != nil {
		f(fr.Type)
	}
	if !relayedTypes[fr.Type] {
		return stepFailed, 0, fmt.Errorf("%w: unexpected message type %q", errBadServerMessage, fr.Type)
	}
	if fr.BodyLen > maxServerMessage && fr.Type != 'D' && fr.Type != 'd' {
		// Rows and COPY data are streamed; other messages may be read whole.
		return stepFailed, 0, fmt.Errorf("%w: %d bytes in message of type %q", errBadServerMessage, fr.BodyLen, fr.Type)
	}
	sc := l.sc
	l.sentBytes += int64(protocol.HeaderLen + fr.BodyLen)
	c.Mu.Lock()
	hidden, sqlDue := l.hiddenBegin, l.sqlStmts.Pending()
	c.Mu.Unlock()
	if hidden {
		if step, handled, err := l.relayHiddenBegin(fr); handled {
			return step, 0, err
		}
	}
	if sqlDue {
		if step, handled, err := l.relaySQLReply(fr); handled {
			return step, 0, err
		}
	}
	var out []byte // a message read whole, possibly replaced; nil when streamed
	// On a replica, a read may yet be refused with 25006 and move to the primary, or lose
	// its server (a fast shutdown's 57P01 can come after its last row, even after its
	// CommandComplete) and run again elsewhere, as long as nothing of its replies has
	// reached the client. So a replayable segment's replies are held until its
	// ReadyForQuery, up to maxHeldReplies bytes: only a larger result, once it passes
	// that, streams (and can no longer be replayed).
	if l.replica >= 0 && !l.answered && l.segOK {
		switch fr.Type {
		case '1', '2', 't', 'T', 'n', 'D', 'C', 'I', 's':
			if len(l.heldReplies)+protocol.HeaderLen+fr.BodyLen > maxHeldReplies {
				break
			}
			msg, err := sc.Frames.Message()
			if err != nil {
				return stepFailed, 0, err
			}
			switch fr.Type {
			case '1':
				msg = l.replyParseComplete(msg)
			case 'C':
				c.Host.Statements().NoteCommandTag(msg[protocol.HeaderLen:])
			}
			l.heldReplies = append(l.heldReplies, msg...)
			return stepContinue, 0, nil
		}
	}
	if len(l.heldReplies) > 0 && fr.Type != 'E' {
		l.answered = true
		if _, err := c.Conn.W.Write(l.heldReplies); err != nil {
			return stepClientGone, 0, nil
		}
		l.heldReplies = l.heldReplies[:0]
	}
	switch fr.Type {
	case 'Z':
		msg, err := sc.Frames.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		if len(msg) != 6 || msg[5] != 'I' && msg[5] != 'T' && msg[5] != 'E' {
			return stepFailed, 0, fmt.Errorf("%w: malformed ReadyForQuery %q", errBadServerMessage, msg[protocol.HeaderLen:])
		}
		return l.onReadyForQuery(msg)
	case 'S':
		msg, err := sc.Frames.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		name, value, ok := protocol.ParseParameterStatus(msg[protocol.HeaderLen:])
		if !ok {
			return stepFailed, 0, fmt.Errorf("%w: malformed ParameterStatus", errBadServerMessage)
		}
		if !l.onParameterStatus(name, value) {
			return stepContinue, 0, nil
		}
		out = msg
	case 'C':
		msg, err := sc.Frames.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		c.Host.Statements().NoteCommandTag(msg[protocol.HeaderLen:])
		out = msg
	case '1', '3', 'E':
		msg, err := sc.Frames.Message()
		if err != nil {
			return stepFailed, 0, err
		}
		switch fr.Type {
		case '1':
			out = l.replyParseComplete(msg)
		case '3':
			out = l.replyCloseComplete(msg)
		default:
			out = l.onErrorResponse(msg)
			if out != nil && len(l.heldReplies) > 0 {
				l.answered = true
				if _, err := c.Conn.W.Write(l.heldReplies); err != nil {
					return stepClientGone, 0, nil
				}
				l.heldReplies = l.heldReplies[:0]
			}
		}
	default:
		// Part of it may reach the client even if the server fails while it is forwarded.
		l.answered = true
		if err := sc.Frames.Forward(c.Conn.W); err != nil {
			if isClientWriteErr(err) {
				return stepClientGone, 0, nil
			}
			return stepFailed, 0, err
		}
	}
	if out != nil {
		if _, err := c.Conn.W.Write(out); err != nil {
			return stepClientGone, 0, nil
		}
	}
	if out != nil || fr.Type != '1' && fr.Type != '3' && fr.Type != 'E' {
		l.answered = true
	}
	if sc.Frames.Buffered() == 0 {
		if err := c.Conn.W.Flush(); err != nil {
			return stepClientGone, 0, nil
		}
	}
	return stepContinue, 0, nil
}

// onReadyForQuery is what a ReadyForQuery from the server (msg, well formed) does, in
// order: an error held for a retry is retried, replayed on the primary, or let go to the
// client; startup values are restored after a RESET; statement mode refuses a
// transaction block; a pin candidate has its session state checked; then the client gets
// the ReadyForQuery, and the lease may end.
// Relay only; the caller holds c.Conn.WMu.
func (l *Lease) onReadyForQuery(msg []byte) (relayStep, byte, error) {
	c := l.c
	status := msg[5]
	if len(l.heldErr) > 0 {
		if l.toPrimary && l.replayOnPrimary(status) {
			return stepStop, 0, nil
		}
		if !l.toPrimary && !l.away && l.retrySegment(status) {
			return stepContinue, 0, nil
		}
		if _, err := c.Conn.W.Write(l.heldErr); err != nil {
			return stepClientGone, 0, nil
		}
		l.heldErr = l.heldErr[:0]
		l.noteRestoreFailed()
	}
	if ran, err := l.restoreStartup(); err != nil {
		if err == errClientWrite {
			return stepClientGone, 0, nil
		}
		return stepFailed, 0, err
	} else if ran {
		msg = protocol.AppendReadyForQuery(nil, status) // msg was read over
	}
	l.answered = false
	if c.Mode == Statement && status != 'I' {
		return stepTransactionBlock, status, nil
	}
	if status == 'I' && l.needLSN && l.executed {
		c.Host.NoteCommit()
	}
	if status == 'I' && l.pinWatch.Load() {
		// Session state may have been left or released: the server says (pin.go).
		if ran, err := l.checkPin(); err != nil {
			return stepFailed, 0, err
		} else if ran {
			msg = ReadyIdle // msg was read over
		}
	}
	if _, err := c.Conn.W.Write(msg); err != nil {
		return stepClientGone, 0, nil
	}
	switch end, dead := l.endsLease(status); {
	case dead:
		return stepStop, 0, nil
	case end:
		return stepEnd, 0, nil
	}
	if l.sc.Frames.Buffered() == 0 {
		if err := c.Conn.W.Flush(); err != nil {
			return stepClientGone, 0, nil
		}
	}
	return stepContinue, 0, nil
}

// onParameterStatus is what a ParameterStatus from the server does: the server's value is
// noted, and the client's unless the message is held until startup values are restored.
// It reports whether the message goes on to the client now. Relay only.
func (l *Lease) onParameterStatus(name, value string) bool {
	l.sc.NoteParameterStatus(name, value)
	if l.holdStatus(name, value) {
		return false
	}
	l.c.NoteParameterStatus(name, value)
	return true
}

// onErrorResponse is what an ErrorResponse from the server does: it is counted, turned
// into what the client expects (prepared statements), and either held back for a retry
// or replay (it returns nil, and the replies held with it are dropped) or returned, to be
// written to the client. Relay only.
func (l *Lease) onErrorResponse(msg []byte) []byte {
	l.noteServerError(protocol.ErrorCode(msg[protocol.HeaderLen:]))
	out := l.replyError(msg)
	if l.holdForRetry(out) {
		l.heldReplies = l.heldReplies[:0]
		return nil
	}
	l.noteRestoreFailed()
	return out
}

// maxHeldReplies bounds the replies of a replica's read held until its ReadyForQuery
// (relayOne), so that the read can still run elsewhere if the replica fails under it.
const maxHeldReplies = 16 << 10

// errBadServerMessage is a server message that breaks the protocol: malformed, or of a
// kind no server sends in a session.
var errBadServerMessage = errors.New("invalid message from the server")

// relayedTypes are the message types a server may send once a session has begun.
var relayedTypes = func() (t [256]bool) {
	for _, typ := range []byte("123ACDEGHINSTVWZcdnst") {
		t[typ] = true
	}
	return t
}()

// maxServerMessage bounds the server messages other than DataRow and CopyData, which
// the relay may read whole: PostgreSQL's are far smaller.
const maxServerMessage = 64 << 20

// isBadServerMessage reports whether err says the server broke the protocol.
func isBadServerMessage(err error) bool {
	var fe *protocol.FrameError
	return errors.Is(err, errBadServerMessage) || errors.As(err, &fe) || errors.Is(err, protocol.ErrMessageTooLarge)
}

// isClientWriteErr tells a failed write to the client (ignored: the client goroutine will
// see the close) from a failed read from the server.
func isClientWriteErr(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "write"
}

// NoteParameterStatus keeps a parameter the server reported as the client's own.
func (c *Client) NoteParameterStatus(name, value string) {
	if session.IsServerOnly(name) {
		return
	}
	c.Mu.Lock()
	c.Settings.Set(name, value)
	l := c.Lease
	c.Mu.Unlock()
	if l != nil {
		l.sc.ConfiguredFor, l.sc.ConfiguredVersion = c.ID, c.Settings.Version()
	}
}
