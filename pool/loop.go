package pool

import (
	"context"
	"errors"
	"fmt"

	"github.com/cmlite/cmpool/protocol"
)

// loop reads client messages and forwards them until the client leaves.
func (c *clientSession) loop(ctx context.Context) error {
	for {
		if c.closing.Load() && c.currentLease() == nil && nanotime() >= c.closeAt.Load() {
			return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
		}
		if l := c.unrelayed; l != nil && l.state != leaseParked && !c.client.fr.FrameBuffered() {
			// Reading the client may block: the server's replies must be read meanwhile.
			c.ensureRelay()
		}
		fr, err := c.client.fr.Next()
		if err != nil {
			if c.closing.Load() {
				return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
			}
			if isTimeout(err) {
				if pe := c.idleTimeoutError(); pe != nil {
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
		c.disarmIdleTimeout()
		if f := c.srv.clientFault; f != nil {
			f(fr.Type)
		}
		switch fr.Type {
		case 'X':
			return nil
		case 'Q', 'F', 'S', 'P', 'B', 'D', 'E', 'C', 'H':
		case 'd', 'c', 'f':
			// Copy messages belong to a lease; outside one the server would ignore them.
			if c.currentLease() == nil {
				if err := c.client.fr.Skip(); err != nil {
					return err
				}
				continue
			}
		default:
			return protocol.NewFatal(protocol.CodeProtocolViolation, fmt.Sprintf("invalid frontend message type %q", fr.Type))
		}

		if c.discarding {
			// As a server does after an error in an extended-protocol batch.
			if err := c.client.fr.Skip(); err != nil {
				return err
			}
			if fr.Type == 'S' {
				c.discarding = false
				if err := c.client.writeLocal(readyIdle); err != nil {
					return err
				}
			}
			continue
		}

		// The messages cmpool may answer or rewrite are read whole; the rest stream.
		var msg []byte
		switch fr.Type {
		case 'Q', 'P', 'B', 'D', 'C', 'E':
			if msg, err = c.client.fr.Message(); err != nil {
				return err
			}
		}
		if fr.Type == 'Q' {
			q := c.texts.text(queryText(msg))
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
			if deferred, err := c.deferBegin(q); deferred || err != nil {
				if err != nil {
					return err
				}
				continue
			}
		}

		if fr.Type == 'P' && c.deferParse(msg) {
			continue
		}
		if c.stmts.HasDeferred() && (fr.Type == 'S' || fr.Type == 'H') && c.currentLease() == nil {
			if err := c.answerDeferred(fr.Type == 'S'); err != nil {
				return err
			}
			continue
		}

		l := c.claim(fr.Type)
		if l == nil {
			if fr.Type == 'S' {
				// A Sync with nothing before it: nothing to ask a server.
				if err := c.client.fr.Skip(); err != nil {
					return err
				}
				if err := c.client.writeLocal(protocol.AppendReadyForQuery(nil, c.localStatus())); err != nil {
					return err
				}
				continue
			}
			if fr.Type == 'H' {
				if err := c.client.fr.Skip(); err != nil {
					return err
				}
				continue
			}
			l, err = c.acquire(ctx, fr.Type, msg)
			if err != nil {
				var pe *protocol.Error
				if !errors.As(err, &pe) || pe.Fatal() {
					return err
				}
				if err := c.failRequest(fr, pe); err != nil {
					return err
				}
				continue
			}
			c.mu.Lock()
			l.account(fr.Type)
			c.mu.Unlock()
		}
		if c.beginDeferred {
			l.sendBegin()
		}
		if err := l.sendDeferred(); err != nil {
			return err
		}
		l.recordForRetry(fr.Type, msg)
		if err := c.send(l, msg); err != nil {
			return err
		}
		l.recvBytes.Add(int64(protocol.HeaderLen + fr.BodyLen))
		if c.srv.conf().QueryTimeout > 0 && (fr.Type == 'Q' || fr.Type == 'S' || fr.Type == 'F') {
			l.armQueryTimer()
		}
		l.relayAfter(fr.Type)
	}
}

// failRequest answers a request that could not reach a server with pe, as a server
// would: a simple query gets ReadyForQuery at once; an extended-protocol message makes
// the session discard input until Sync.
func (c *clientSession) failRequest(fr protocol.Frame, pe *protocol.Error) error {
	if err := c.client.fr.Skip(); err != nil {
		return err
	}
	c.stmts.DropDeferred()  // a server would have skipped them too
	c.beginDeferred = false // the transaction is over (deferbegin.go)
	c.srv.noteError(c.database, c.user, pe.Code)
	out := protocol.AppendErrorResponse(nil, pe)
	switch fr.Type {
	case 'Q', 'F':
		out = protocol.AppendReadyForQuery(out, 'I')
	default:
		c.discarding = true
	}
	return c.client.writeLocal(out)
}

// localStatus is the transaction status cmpool reports for a client that holds no server:
// in a transaction if a BEGIN is deferred, else idle.
func (c *Client) localStatus() byte {
	if c.beginDeferred {
		return 'T'
	}
	return 'I'
}
