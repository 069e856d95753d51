package pool

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// This file answers the SQL commands that manage prepared statements and session state
// where pooling changes their meaning.

// simpleCommand answers DEALLOCATE, DISCARD ALL and SQL PREPARE/EXECUTE where pooling
// changes their meaning, and refuses LISTEN and temporary objects outside session mode. It
// reports whether the query was handled here.
func (c *clientSession) simpleCommand(q string) (bool, error) {
	kind, name := router.CommandOf(q)
	sessionMode := c.mode == ModeSession
	var reply []byte
	if !sessionMode {
		if what := tempObjectOf(q); what != "" {
			return true, c.replyLocally(protocol.AppendErrorResponse(nil, c.mode.refuseTempObject(what)))
		}
	}
	switch kind {
	default:
		return false, nil
	case router.CommandListen:
		if sessionMode {
			return false, nil
		}
		reply = protocol.AppendErrorResponse(nil, c.mode.refuseListen())
	case router.CommandPrepare, router.CommandExecute:
		if sessionMode {
			return false, nil
		}
		pe := protocol.NewError(protocol.CodeFeatureNotSupported,
			fmt.Sprintf("SQL-level %s is not supported in %s pooling mode", strings.ToUpper(q[:strings.IndexAny(q+" ", " \t\n(")]), c.mode))
		pe.Hint = "use protocol-level prepared statements (Parse/Bind, as drivers do), which cmpool maps across server connections, or pool_mode = session"
		reply = protocol.AppendErrorResponse(nil, pe)
	case router.CommandDeallocate:
		c.mu.Lock()
		known := c.stmts.Forget(name)
		c.mu.Unlock()
		if !known {
			if sessionMode {
				return false, nil // an SQL-level statement of the session's own
			}
			reply = protocol.AppendErrorResponse(nil, protocol.NewError("26000", fmt.Sprintf("prepared statement %q does not exist", name)))
		} else {
			reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE")}).Encode(nil)
		}
	case router.CommandDeallocateAll, router.CommandDiscardAll:
		var statuses []byte
		c.mu.Lock()
		c.stmts.ForgetAll()
		if kind == router.CommandDiscardAll && !sessionMode {
			// DISCARD ALL resets the session's settings to what it started with, and the
			// client is told of the reported ones that change, as a server would.
			statuses = c.discardSettings()
		}
		if sessionMode && c.lease != nil {
			// The server runs it: its statements, cmpool's included, are gone.
			c.lease.sc.Prepared.Clear()
			c.mu.Unlock()
			return false, nil
		}
		c.mu.Unlock()
		tag := "DEALLOCATE ALL"
		if kind == router.CommandDiscardAll {
			tag = "DISCARD ALL"
		}
		reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(nil)
		reply = append(reply, statuses...)
	}
	return true, c.replyLocally(reply)
}

// waitIdle waits until every request sent on the current lease has been answered and
// the lease is not being synced. The caller holds c.mu.
func (c *Client) waitIdle() {
	c.ensureRelayLocked() // the replies waited for must be read
	for c.lease != nil && (c.lease.pending > 0 || c.lease.unsynced || !c.lease.open()) {
		c.idle.Wait()
	}
}

// replyLocally answers a simple query without a server: the reply, then ReadyForQuery
// with the session's transaction status. With a lease it first waits until every earlier
// request has been answered, so replies stay in order.
func (c *Client) replyLocally(reply []byte) error {
	c.flushServer()
	c.mu.Lock()
	c.waitIdle()
	// Inside a transaction block the server's status stands: a refused command does not
	// abort the transaction, unlike a server-side error (see docs/pooling.md).
	status := c.localStatus()
	if c.lease != nil {
		status = c.lease.sc.TxStatus
	}
	c.mu.Unlock()
	return c.client.writeLocal(protocol.AppendReadyForQuery(reply, status))
}
