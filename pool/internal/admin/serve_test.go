package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/protocol"
)

// serve runs a console over the client messages msgs and returns what it wrote, the
// failed commands' SQLSTATEs and Serve's error. closingAfter > 0 marks the connection
// closing after that many writes.
func serve(t *testing.T, f *fakeController, closingAfter int, msgs ...pgproto3.FrontendMessage) (out []byte, failed []string, err error) {
	t.Helper()
	var in []byte
	for _, m := range msgs {
		in, err = m.Encode(in)
		require.NoError(t, err)
	}
	writes := 0
	conn := admin.Conn{
		Frames: protocol.NewFrameReader(bufio.NewReader(bytes.NewReader(in)), 0),
		Write: func(b []byte) error {
			writes++
			out = append(out, b...)
			return nil
		},
		Closing: func() bool { return closingAfter > 0 && writes >= closingAfter },
		Failed:  func(code string) { failed = append(failed, code) },
	}
	err = newConsole(f, "root").Serve(context.Background(), conn)
	return out, failed, err
}

// messages decodes what the console wrote.
func messages(t *testing.T, b []byte) []pgproto3.BackendMessage {
	t.Helper()
	fe := pgproto3.NewFrontend(bytes.NewReader(b), io.Discard)
	var out []pgproto3.BackendMessage
	for {
		msg, err := fe.Receive()
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		switch m := msg.(type) { // copy: a message is valid only until the next Receive
		case *pgproto3.ErrorResponse:
			c := *m
			out = append(out, &c)
		case *pgproto3.ReadyForQuery:
			c := *m
			out = append(out, &c)
		case *pgproto3.CommandComplete:
			out = append(out, &pgproto3.CommandComplete{CommandTag: bytes.Clone(m.CommandTag)})
		case *pgproto3.ParameterStatus:
			c := *m
			out = append(out, &c)
		case *pgproto3.BackendKeyData:
			out = append(out, &pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: bytes.Clone(m.SecretKey)})
		default:
			out = append(out, msg)
		}
	}
}

func kinds(msgs []pgproto3.BackendMessage) []string {
	var out []string
	for _, m := range msgs {
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			out = append(out, "E "+m.Code)
		case *pgproto3.ReadyForQuery:
			out = append(out, "Z "+string(m.TxStatus))
		case *pgproto3.CommandComplete:
			out = append(out, "C "+string(m.CommandTag))
		case *pgproto3.RowDescription:
			out = append(out, "T")
		case *pgproto3.DataRow:
			out = append(out, "D")
		default:
			out = append(out, "?")
		}
	}
	return out
}

func TestServeSimpleQueries(t *testing.T) {
	f := &fakeController{roles: map[string]admin.Role{"root": admin.RoleAdmin}}
	out, failed, err := serve(t, f, 0,
		&pgproto3.Query{String: "SHOW VERSION"},
		&pgproto3.Query{String: "RECONNECT; KILL"},
		&pgproto3.Sync{},
		&pgproto3.Terminate{},
		&pgproto3.Query{String: "SHUTDOWN"}, // after Terminate: never read
	)
	require.NoError(t, err)
	require.Equal(t, []string{"42601"}, failed)
	require.Equal(t, []string{"reconnect "}, f.calls)
	require.Equal(t, []string{"T", "D", "C SHOW", "Z I", "C RECONNECT", "E 42601", "Z I", "Z I"}, kinds(messages(t, out)))
}

func TestServeRefusesTheExtendedProtocol(t *testing.T) {
	f := &fakeController{}
	out, failed, err := serve(t, f, 0,
		&pgproto3.Parse{Query: "SHOW POOLS"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.FunctionCall{Function: 1},
		&pgproto3.Terminate{},
	)
	require.NoError(t, err)
	require.Empty(t, failed)
	require.Empty(t, f.parts)
	// One error per batch, then the Sync's ReadyForQuery; a FunctionCall gets its own.
	require.Equal(t, []string{"E 0A000", "Z I", "E 0A000", "Z I"}, kinds(messages(t, out)))
}

func TestServeEnds(t *testing.T) {
	f := &fakeController{roles: map[string]admin.Role{"root": admin.RoleAdmin}}
	_, _, err := serve(t, f, 1, &pgproto3.Query{String: "SHUTDOWN"}, &pgproto3.Query{String: "SHOW VERSION"})
	var pe *protocol.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, protocol.CodeAdminShutdown, pe.Code)
	require.Equal(t, []string{"shutdown 0"}, f.calls)

	_, _, err = serve(t, f, 0, &pgproto3.CopyDone{})
	require.ErrorAs(t, err, &pe)
	require.Equal(t, protocol.CodeProtocolViolation, pe.Code)

	_, _, err = serve(t, f, 0) // the client went away
	require.ErrorIs(t, err, io.EOF)
}

func TestStartupReply(t *testing.T) {
	msgs := messages(t, admin.StartupReply("psql", 42, []byte{1, 2, 3, 4}))
	require.Len(t, msgs, 11)
	params := map[string]string{}
	for _, m := range msgs[:9] {
		ps := m.(*pgproto3.ParameterStatus)
		params[ps.Name] = ps.Value
	}
	require.Equal(t, "psql", params["application_name"])
	require.Equal(t, "15.0", params["server_version"])
	require.Equal(t, "UTF8", params["client_encoding"])
	key := msgs[9].(*pgproto3.BackendKeyData)
	require.Equal(t, uint32(42), key.ProcessID)
	require.Equal(t, []byte{1, 2, 3, 4}, key.SecretKey)
	require.Equal(t, byte('I'), msgs[10].(*pgproto3.ReadyForQuery).TxStatus)
}
