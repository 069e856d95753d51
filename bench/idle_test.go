package main

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"
)

// loginReplies encodes backend messages as a server sends them after a StartupMessage.
func loginReplies(t *testing.T, msgs ...pgproto3.BackendMessage) []byte {
	var buf []byte
	for _, m := range msgs {
		var err error
		buf, err = m.Encode(buf)
		require.NoError(t, err)
	}
	return buf
}

func TestReadUntilReady(t *testing.T) {
	ok := loginReplies(t, &pgproto3.AuthenticationOk{}, &pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"},
		&pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{0, 0, 0, 1}}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	for _, tc := range []struct {
		name    string
		replies []byte
		wantErr string
	}{
		{"trust login", ok, ""},
		{"refused", loginReplies(t, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "53300", Message: "sorry, too many clients already"}),
			"login refused: sorry, too many clients already"},
		{"password asked", loginReplies(t, &pgproto3.AuthenticationCleartextPassword{}), "asks for a password"},
		{"cut short", ok[:len(ok)-3], "read login reply"},
		{"bad length", []byte{'Z', 0, 0, 0, 1}, "bad message length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := readUntilReady(bytes.NewReader(tc.replies))
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestOpenIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	startups := make(chan map[string]string, 100)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				be := pgproto3.NewBackend(conn, conn)
				msg, err := be.ReceiveStartupMessage()
				if err != nil {
					conn.Close()
					return
				}
				startups <- msg.(*pgproto3.StartupMessage).Parameters
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				_ = be.Flush()
				// Held open, like an idle client's server side, until the client closes it.
				_, _ = conn.Read(make([]byte, 1))
				conn.Close()
			}()
		}
	}()

	conns, err := openIdle(context.Background(), ln.Addr().String(), 100, "alice", "bench")
	require.NoError(t, err)
	require.Len(t, conns, 100)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	params := <-startups
	require.Equal(t, "alice", params["user"])
	require.Equal(t, "bench", params["database"])

	// A refused connection stops the opening and reports why.
	_ = ln.Close()
	conns, err = openIdle(context.Background(), ln.Addr().String(), 10, "alice", "bench")
	require.Error(t, err)
	require.Empty(t, conns)
}
