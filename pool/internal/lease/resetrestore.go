package lease

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/session"
)

// Startup values and RESET.
//
// On a direct connection RESET, RESET ALL and DISCARD ALL return a parameter to the value
// the client gave at startup (in the startup packet, or as options=-c). cmpool's servers
// are opened without the client's parameters, which it applies with set_config; that
// does not change what the server resets to (PostgreSQL takes it from the startup packet
// only). So when a client's statement resets parameters it gave at startup, cmpool puts
// their startup values back on the same server right after the statement, before the
// client sees its ReadyForQuery or can send anything else:
//
//   - When the statement is sent (its Query, or the Bind of it in the extended protocol),
//     its Sync segment is marked (lease.restoreSeg). The client goroutine sends nothing
//     more on the server until that segment's ReadyForQuery has been handled (claim).
//   - The relay holds the segment's ParameterStatus messages. At its ReadyForQuery, unless
//     the segment failed, it runs one hidden query that sets each startup value again
//     (set_config, non-local: inside a transaction block it is undone by ROLLBACK with the
//     RESET), for the parameters still at their reset value, so that a later SET in the
//     same query string stands. Then it sends the client one ParameterStatus per reported
//     parameter whose final value differs from what the client last saw, and the
//     ReadyForQuery.
//
// The client sees what a direct connection shows: the RESET's own reply, the startup
// values, and ParameterStatus consistent with them. Which statements reset parameters is
// read from the first statement of a query, as for SET (session.ResetsOf).

// scheduleRestore marks Sync segment seg of l: after it, the startup values of the
// parameters in names (session.ResetAll: all) that the client gave at startup are set
// again. The caller holds c.mu.
func (l *Lease) scheduleRestore(names []string, seg uint64) {
	c := l.c
	for _, n := range names {
		if c.Settings.HasStartupOf(n) {
			l.restore = appendUnique(l.restore, n)
			l.restoreSeg = seg
		}
	}
}

// restoring reports whether the client must wait before sending more on l: the segment
// after which startup values are restored has been sent and not yet answered. The
// caller holds c.mu.
func (l *Lease) restoring() bool {
	return l.restoreSeg != 0 && l.sentSeq >= l.restoreSeg
}

// mustWait reports whether the client goroutine must wait for l's replies before it sends
// more (restoring): what was sent must then reach the server now.
func (l *Lease) mustWait() bool {
	c := l.c
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return l.restoring()
}

// restoreDue reports whether the reply being relayed belongs to the segment after which
// startup values are restored. The caller holds c.mu.
func (l *Lease) restoreDue() bool {
	return l.restoreSeg != 0 && l.restoreSeg == l.recvSeq+1
}

// holdStatus keeps a ParameterStatus of a segment whose startup values are to be
// restored, to be sent (or not) once they are; it reports whether it did. Relay only.
func (l *Lease) holdStatus(name, value string) bool {
	c := l.c
	c.Mu.Lock()
	due := l.restoreDue()
	c.Mu.Unlock()
	if due {
		l.heldStatus = append(l.heldStatus, [2]string{name, value})
	}
	return due
}

// restoreStartup runs at the ReadyForQuery of a segment, before it is written to the
// client (the relay holds c.client.wmu). If the segment reset startup parameters and did not
// fail, it sets their startup values again on the server; then it writes the held
// ParameterStatus messages that change what the client sees. It reports whether it read
// from the server (the ReadyForQuery message read before is then overwritten). An error
// means the server cannot be trusted (it may be in a failed transaction the client does
// not know of).
func (l *Lease) restoreStartup() (ran bool, err error) {
	c := l.c
	c.Mu.Lock()
	if !l.restoreDue() {
		c.Mu.Unlock()
		return false, nil
	}
	values, failed := c.Settings.RestoreValues(l.restore), l.restoreFailed
	c.Mu.Unlock()
	reported := l.heldStatus
	l.heldStatus = nil
	if !failed && len(values) > 0 {
		l.wmu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), c.Host.Config().ServerConnectTimeout)
		res, err := l.sc.Exec(ctx, session.RestoreQuery(values))
		cancel()
		l.wmu.Unlock()
		if err == nil && res.Err != nil {
			err = fmt.Errorf("restoring startup parameters after RESET: %w", res.Err)
		}
		if err != nil {
			return true, err // the lease is destroyed, which wakes the client goroutine
		}
		reported = append(reported, res.Reported...)
		ran = true
	}
	c.Mu.Lock()
	l.restore, l.restoreSeg, l.restoreFailed = l.restore[:0], 0, false
	c.broadcastIdle() // the client goroutine may send again
	c.Mu.Unlock()
	var out []byte
	for _, p := range session.FinalValues(reported) {
		name, value := p[0], p[1]
		c.Mu.Lock()
		seen, known := c.Settings.Lookup(name)
		c.Mu.Unlock()
		if known && seen == value {
			continue // the client's view did not change
		}
		c.NoteParameterStatus(name, value)
		out, _ = (&pgproto3.ParameterStatus{Name: name, Value: value}).Encode(out)
	}
	if len(out) > 0 {
		if _, err := c.Conn.W.Write(out); err != nil {
			return ran, errClientWrite
		}
	}
	return ran, nil
}

// noteRestoreFailed records an error in a segment whose startup values were to be
// restored: the statement did not take effect. Relay only.
func (l *Lease) noteRestoreFailed() {
	c := l.c
	c.Mu.Lock()
	if l.restoreDue() {
		l.restoreFailed = true
	}
	c.Mu.Unlock()
}

// errClientWrite is restoreStartup's failure to write to the client.
var errClientWrite = errors.New("write to client failed")
