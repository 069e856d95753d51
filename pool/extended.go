package pool

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// This file answers the SQL commands that manage prepared statements and session state
// where pooling changes their meaning.

// simpleCommand answers DEALLOCATE and DISCARD ALL where pooling changes their meaning,
// judges SQL PREPARE and EXECUTE (which go on to a server, rewritten), and refuses LISTEN
// and temporary objects outside session mode. It reports whether the query was handled
// here.
func (c *clientSession) simpleCommand(q string) (bool, error) {
	j := c.Judge(q)
	kind, name := j.Kind, j.Name
	sessionMode := c.Mode == lease.Session
	var reply []byte
	if pe := c.SessionStateRefusal(q); pe != nil {
		return true, c.ReplyLocally(protocol.AppendErrorResponse(nil, pe))
	}
	if kind == router.CommandDiscardAll && !sessionMode {
		c.Mu.Lock()
		pinned := c.DiscardPinnedLocked()
		if pinned {
			c.unlistenAll()
		}
		c.Mu.Unlock()
		if pinned {
			return false, nil // the pinned client's server runs it
		}
	}
	switch kind {
	default:
		if sessionMode {
			return false, nil
		}
		// EXPLAIN … EXECUTE, CREATE TABLE … AS EXECUTE, several statements naming
		// prepared statements: see JudgePreparedSQL.
		if pe := c.JudgePreparedSQL(q); pe != nil {
			return true, c.ReplyLocally(protocol.AppendErrorResponse(nil, pe))
		}
		return false, nil
	case router.CommandListen, router.CommandUnlisten, router.CommandUnlistenAll:
		if sessionMode {
			return false, nil
		}
		if kind == router.CommandListen && !c.Pin.On {
			return true, c.ReplyLocally(protocol.AppendErrorResponse(nil, sessionFeatureOff("LISTEN", c.Mode)))
		}
		return true, c.listenCommand(kind, name)
	case router.CommandPrepare, router.CommandExecute:
		if sessionMode {
			return false, nil
		}
		if !c.Pin.On {
			what := "PREPARE"
			if kind == router.CommandExecute {
				what = "EXECUTE"
			}
			return true, c.ReplyLocally(protocol.AppendErrorResponse(nil, sessionFeatureOff("SQL-level "+what, c.Mode)))
		}
		// Rewritten to cmpool's statement names when sent (pool/internal/lease/sqlprepare.go).
		if pe := c.JudgePreparedSQL(q); pe != nil {
			return true, c.ReplyLocally(protocol.AppendErrorResponse(nil, pe))
		}
		return false, nil
	case router.CommandDeallocate:
		c.Mu.Lock()
		known := c.Stmts.Forget(name)
		c.Mu.Unlock()
		if !known {
			if sessionMode {
				return false, nil // an SQL-level statement of the session's own
			}
			reply = protocol.AppendErrorResponse(nil, stmt.NotFound(name))
		} else {
			reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("DEALLOCATE")}).Encode(nil)
		}
	case router.CommandDeallocateAll, router.CommandDiscardAll:
		var statuses []byte
		c.Mu.Lock()
		c.Stmts.ForgetAll()
		if kind == router.CommandDiscardAll && !sessionMode {
			c.unlistenAll() // as a server's DISCARD ALL runs UNLISTEN *
			// DISCARD ALL resets the session's settings to what it started with, and the
			// client is told of the reported ones that change, as a server would.
			statuses = c.discardSettings()
		}
		if sessionMode && c.Lease != nil {
			// The server runs it: its statements, cmpool's included, are gone.
			c.Lease.Server().Prepared.Clear()
			c.Mu.Unlock()
			return false, nil
		}
		c.Mu.Unlock()
		tag := "DEALLOCATE ALL"
		if kind == router.CommandDiscardAll {
			tag = "DISCARD ALL"
		}
		reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(nil)
		reply = append(reply, statuses...)
	}
	return true, c.ReplyLocally(reply)
}

// sessionFeatureOff is the error for a session feature (LISTEN, SQL PREPARE and EXECUTE)
// used in mode on a database with pin_session_state = false, which turns them off as it
// turns off pinning.
func sessionFeatureOff(what string, mode lease.Mode) *protocol.Error {
	pe := protocol.NewError(protocol.CodeFeatureNotSupported,
		fmt.Sprintf("%s is not supported in %s pooling mode with pin_session_state = false", what, mode))
	pe.Hint = "set pin_session_state = true (the default) for this database, or use pool_mode = session"
	return pe
}

// discardSettings returns the session's settings to their startup values for DISCARD
// ALL, and returns the ParameterStatus messages a server would send for it. The caller
// holds c.Mu.
func (c *clientSession) discardSettings() []byte {
	var defaults map[string]string
	if w, ok := c.srv.welcomes.Load(welcomeKey{c.Database, c.User}); ok {
		defaults = w.(map[string]string)
	}
	out := c.Settings.DiscardStatuses(nil, defaults)
	c.Settings.Discard()
	return out
}
