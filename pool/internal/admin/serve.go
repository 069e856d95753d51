package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
)

// StartupReply is what a console client gets after AuthenticationOk: the parameters of a
// PostgreSQL 15 server speaking UTF-8 (with the client's application_name), its key, and
// ReadyForQuery.
func StartupReply(applicationName string, pid uint32, secret []byte) []byte {
	var out []byte
	for _, p := range [][2]string{
		{"application_name", applicationName},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO"},
		{"integer_datetimes", "on"},
		{"IntervalStyle", "postgres"},
		{"server_encoding", "UTF8"},
		{"server_version", "15.0"},
		{"standard_conforming_strings", "on"},
		{"TimeZone", "UTC"},
	} {
		out, _ = (&pgproto3.ParameterStatus{Name: p[0], Value: p[1]}).Encode(out)
	}
	out, _ = (&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: secret}).Encode(out)
	return protocol.AppendReadyForQuery(out, 'I')
}

// Conn is a console client's connection, logged in.
type Conn struct {
	// Frames reads the client's messages.
	Frames *protocol.FrameReader
	// Write sends b to the client at once.
	Write func(b []byte) error
	// Closing reports whether the connection is being closed (KILL, SHUTDOWN).
	Closing func() bool
	// Failed hears of the SQLSTATE of each command that failed.
	Failed func(code string)
}

// readyIdle is ReadyForQuery with status idle.
var readyIdle = protocol.AppendReadyForQuery(nil, 'I')

// Serve answers conn's simple queries until the client leaves. The extended protocol is
// refused, once per batch up to its Sync.
func (c *Console) Serve(ctx context.Context, conn Conn) error {
	discarding := false
	for {
		fr, err := conn.Frames.Next()
		if err != nil {
			if conn.Closing() {
				return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
			}
			var fe *protocol.FrameError
			if errors.As(err, &fe) || errors.Is(err, protocol.ErrMessageTooLarge) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
			}
			return err
		}
		switch fr.Type {
		case 'X':
			return nil
		case 'Q':
			msg, err := conn.Frames.Message()
			if err != nil {
				return err
			}
			out, failed := c.Run(ctx, string(msg[protocol.HeaderLen:len(msg)-1]))
			if failed != nil {
				conn.Failed(failed.Code)
			}
			out = protocol.AppendReadyForQuery(out, 'I')
			if err := conn.Write(out); err != nil {
				return err
			}
		case 'S':
			if err := conn.Frames.Skip(); err != nil {
				return err
			}
			discarding = false
			if err := conn.Write(readyIdle); err != nil {
				return err
			}
		case 'P', 'B', 'D', 'E', 'C', 'H', 'F':
			if err := conn.Frames.Skip(); err != nil {
				return err
			}
			if discarding {
				continue
			}
			discarding = fr.Type != 'F'
			pe := protocol.NewError(protocol.CodeFeatureNotSupported, "the admin console supports only the simple query protocol")
			pe.Hint = "use simple queries (psql, lib/pq, or pgx with QueryExecModeSimpleProtocol)"
			out := protocol.AppendErrorResponse(nil, pe)
			if fr.Type == 'F' {
				out = protocol.AppendReadyForQuery(out, 'I')
			}
			if err := conn.Write(out); err != nil {
				return err
			}
		default:
			return protocol.NewFatal(protocol.CodeProtocolViolation, fmt.Sprintf("invalid frontend message type %q", fr.Type))
		}
		if conn.Closing() {
			return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
		}
	}
}
