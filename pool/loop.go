package pool

import (
	"context"
	"errors"
	"fmt"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
)

// loop reads client messages and forwards them until the client leaves.
func (c *clientSession) loop(ctx context.Context) error {
	for {
		if c.Closing.Load() && c.CurrentLease() == nil && lease.Nanotime() >= c.CloseAt.Load() {
			return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
		}
		c.BeforeRead() // reading the client may block: the server's replies are read meanwhile
		if c.srv.loops != nil && c.waitClient() {
			return lease.ErrSuspended // an event loop runs c when the client sends more
		}
		fr, err := c.Conn.FR.Next()
		if err != nil {
			if lease.IsTimeout(err) && c.rearmIdle.Swap(false) && !c.Closing.Load() && !c.xactTimedOut.Load() && !c.killed.Load() {
				c.rearm() // a reload turned client_idle_timeout on (park.go)
				continue
			}
			if lease.IsTimeout(err) && c.parkReq.Swap(false) {
				// The sweeper asks the client to park (park.go).
				if c.tryPark() {
					return errParked
				}
				c.afterPark()
				continue
			}
			if c.Closing.Load() {
				return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
			}
			if lease.IsTimeout(err) && c.xactTimedOut.Load() {
				return transactionTimeoutError()
			}
			if lease.IsTimeout(err) {
				if pe := c.IdleTimeoutError(); pe != nil {
					return pe
				}
			}
			if errors.Is(err, protocol.ErrMessageTooLarge) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
			}
			var fe *protocol.FrameError
			if errors.As(err, &fe) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, fe.Error())
			}
			return err
		}
		if c.killed.Load() {
			// KILL_CLIENT: the deadline it set may lose to a message that arrived with it.
			return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
		}
		c.DisarmIdleTimeout()
		if c.parkRefused.Load() != 0 {
			c.parkRefused.Store(0) // the sweeper may ask again (tryPark)
		}
		if f := c.srv.clientFault; f != nil {
			f(fr.Type)
		}
		switch fr.Type {
		case 'X':
			return nil
		case 'Q', 'F', 'S', 'P', 'B', 'D', 'E', 'C', 'H':
		case 'd', 'c', 'f':
			// Copy messages belong to a lease; outside one the server would ignore them.
			if c.CurrentLease() == nil {
				if err := c.Conn.FR.Skip(); err != nil {
					return err
				}
				continue
			}
		default:
			return protocol.NewFatal(protocol.CodeProtocolViolation, fmt.Sprintf("invalid frontend message type %q", fr.Type))
		}

		if c.Discarding {
			// As a server does after an error in an extended-protocol batch.
			if err := c.Conn.FR.Skip(); err != nil {
				return err
			}
			if fr.Type == 'S' {
				c.Discarding = false
				if err := c.Conn.WriteLocal(lease.ReadyIdle); err != nil {
					return err
				}
			}
			continue
		}

		// The messages cmpool may answer or rewrite are read whole; the rest stream.
		var msg []byte
		switch fr.Type {
		case 'Q', 'P', 'B', 'D', 'C', 'E':
			if msg, err = c.Conn.FR.Message(); err != nil {
				return err
			}
		}
		if c.listening != nil && (fr.Type == 'Q' || (fr.Type == 'P' || fr.Type == 'B') && c.CurrentLease() == nil) {
			c.syncNotifications()
		}
		if fr.Type == 'Q' {
			q := c.Text(lease.QueryText(msg))
			handled, err := c.proxyCommand(q)
			if !handled && err == nil {
				handled, err = c.simpleCommand(q)
			}
			if handled || err != nil {
				if err != nil {
					return err
				}
				continue
			}
			if deferred, err := c.DeferBegin(q); deferred || err != nil {
				if err != nil {
					return err
				}
				continue
			}
		}

		if fr.Type == 'P' && c.DeferParse(msg) {
			continue
		}
		if c.Stmts.HasDeferred() && (fr.Type == 'S' || fr.Type == 'H') && c.CurrentLease() == nil {
			if err := c.AnswerDeferred(fr.Type == 'S'); err != nil {
				return err
			}
			continue
		}

		l := c.Claim(fr.Type)
		if l == nil {
			if fr.Type == 'S' {
				// A Sync with nothing before it: nothing to ask a server.
				if err := c.Conn.FR.Skip(); err != nil {
					return err
				}
				if err := c.Conn.WriteLocal(protocol.AppendReadyForQuery(nil, c.LocalStatus())); err != nil {
					return err
				}
				continue
			}
			if fr.Type == 'H' {
				if err := c.Conn.FR.Skip(); err != nil {
					return err
				}
				continue
			}
			l, err = c.acquire(ctx, fr, msg)
			if err != nil {
				if err == lease.ErrSuspended {
					return err // it waits for a server on an event loop, and goes on in afterClaim
				}
				if err := c.acquireFailed(fr, err); err != nil {
					return err
				}
				continue
			}
			c.Account(l, fr.Type)
		}
		if err := c.Forward(l, fr.Type, msg, protocol.HeaderLen+fr.BodyLen); err != nil {
			return err
		}
	}
}

// acquireFailed answers the request fr that acquire failed to get a server for with err,
// when the session can go on; a fatal error is returned.
func (c *clientSession) acquireFailed(fr protocol.Frame, err error) error {
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Fatal() {
		return err
	}
	return c.failRequest(fr, pe)
}

// failRequest answers a request that could not reach a server with pe, as a server
// would: a simple query gets ReadyForQuery at once; an extended-protocol message makes
// the session discard input until Sync.
func (c *clientSession) failRequest(fr protocol.Frame, pe *protocol.Error) error {
	if err := c.Conn.FR.Skip(); err != nil {
		return err
	}
	c.Stmts.DropDeferred()    // a server would have skipped them too
	c.BeginDeferred = false   // the transaction is over (deferbegin.go)
	c.ReleasePinReservation() // what it reserved a max_pinned slot for never ran
	c.srv.noteError(c.Database, c.User, pe.Code)
	out := protocol.AppendErrorResponse(nil, pe)
	switch fr.Type {
	case 'Q', 'F':
		out = protocol.AppendReadyForQuery(out, 'I')
	default:
		c.Discarding = true
	}
	return c.Conn.WriteLocal(out)
}
