package pool

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/notify"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// LISTEN and UNLISTEN outside session mode.
//
// A client in transaction or statement mode holds no server between transactions, so its
// LISTEN cannot stay on one. cmpool answers LISTEN and UNLISTEN itself and listens for it
// on the database's one listening connection (pool/internal/notify), which delivers each
// notification of the client's channels to it, between whole messages of anything else,
// whether it is idle or in a transaction. NOTIFY and pg_notify() go to the servers as
// usual; PostgreSQL delivers them at commit. UNLISTEN *, DISCARD ALL and the client's
// exit end its LISTENs. See docs/pooling.md.

// listenCommand answers LISTEN channel, UNLISTEN channel and UNLISTEN * (kind) sent as a
// whole simple query; channel is "" when the query holds more than that one statement.
func (c *clientSession) listenCommand(kind router.Command, channel string) error {
	tag := "UNLISTEN"
	switch {
	case channel == "" && kind != router.CommandUnlistenAll:
		pe := protocol.NewError(protocol.CodeFeatureNotSupported,
			"LISTEN and UNLISTEN must be sent on their own in "+c.Mode.String()+" pooling mode")
		pe.Hint = "send LISTEN channel (or UNLISTEN) as a query of its own, not with other statements or through a prepared statement"
		return c.ReplyLocally(protocol.AppendErrorResponse(nil, pe))
	case kind == router.CommandListen:
		tag = "LISTEN"
		if err := c.listen(channel); err != nil {
			return c.ReplyLocally(protocol.AppendErrorResponse(nil, listenError(err)))
		}
	case kind == router.CommandUnlisten:
		if c.listening != nil {
			c.srv.notify.Unlisten(c.Database, c.listening, channel)
		}
	default:
		c.unlistenAll()
	}
	reply, _ := (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(nil)
	return c.ReplyLocally(reply)
}

// listen makes the client listen on channel, through its database's listening connection.
func (c *clientSession) listen(channel string) error {
	if c.listening == nil {
		c.listening = notify.NewSubscriber(c.writeNotification, c.notificationsOverflow)
	}
	db, user := c.Database, c.User
	config := func() (*pgconn.Config, error) {
		bp, err := c.srv.poolFor(db, user, backendPrimary)
		if err != nil {
			return nil, err
		}
		return bp.ConnConfig, nil
	}
	ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.conf().ServerConnectTimeout+5*time.Second)
	defer cancel()
	return c.srv.notify.Listen(ctx, db, config, c.listening, channel)
}

// syncNotifications runs before each request of a client that listens: notifications
// committed before it reach the client before its reply (notify.Hub.Sync).
func (c *clientSession) syncNotifications() {
	if c.listening == nil || !c.listening.Listening() {
		return
	}
	ctx, cancel := context.WithTimeout(c.srv.ctx, notificationWriteTimeout)
	defer cancel()
	c.srv.notify.Sync(ctx, c.Database, c.listening)
}

// unlistenAll ends the client's LISTENs.
func (c *clientSession) unlistenAll() {
	if c.listening != nil {
		c.srv.notify.Unlisten(c.Database, c.listening, "")
	}
}

// writeNotification sends a notification (or a notice about them) to the client, between
// whole messages of anything else written to it.
func (c *clientSession) writeNotification(msg []byte) error {
	c.Conn.WMu.Lock()
	defer c.Conn.WMu.Unlock()
	_ = c.Conn.Net.SetWriteDeadline(time.Now().Add(notificationWriteTimeout))
	defer c.Conn.Net.SetWriteDeadline(time.Time{})
	if _, err := c.Conn.W.Write(msg); err != nil {
		return err
	}
	return c.Conn.W.Flush()
}

// notificationWriteTimeout bounds writing one notification to a client.
const notificationWriteTimeout = 10 * time.Second

// notificationsOverflow disconnects a client that let notify.MaxQueued notifications pile up
// unread: its queue would grow without bound.
func (c *clientSession) notificationsOverflow() {
	c.Log.Warn("client does not read its notifications: disconnecting it", "queued", notify.MaxQueued)
	_ = c.Conn.Net.Close()
}

// listenError is the error a client gets for a LISTEN that could not be made.
func listenError(err error) *protocol.Error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &protocol.Error{Severity: protocol.SeverityError, Code: pgErr.Code, Message: pgErr.Message, Detail: pgErr.Detail, Hint: pgErr.Hint}
	}
	return protocol.NewError(protocol.CodeConnectionFailure, "LISTEN: cmpool could not listen on the server: "+err.Error())
}
