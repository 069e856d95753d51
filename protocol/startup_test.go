package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/protocol"
)

func startupPacket(code uint32, rest []byte) []byte {
	b := make([]byte, 8, 8+len(rest))
	binary.BigEndian.PutUint32(b, uint32(8+len(rest)))
	binary.BigEndian.PutUint32(b[4:], code)
	return append(b, rest...)
}

func params(kv ...string) []byte {
	var b []byte
	for _, s := range kv {
		b = append(b, s...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func TestReadStartupRequest(t *testing.T) {
	read := func(b []byte) (*protocol.StartupRequest, error) {
		return protocol.ReadStartupRequest(bufio.NewReader(bytes.NewReader(b)))
	}
	t.Run("startup", func(t *testing.T) {
		req, err := read(startupPacket(3<<16, params("user", "alice", "database", "app", "TimeZone", "UTC")))
		require.NoError(t, err)
		require.Equal(t, map[string]string{"user": "alice", "database": "app", "TimeZone": "UTC"}, req.Startup.Parameters)
		require.False(t, req.NeedsNegotiation())
	})
	t.Run("ssl and gssenc", func(t *testing.T) {
		req, err := read(startupPacket(80877103, nil))
		require.NoError(t, err)
		require.True(t, req.SSL)
		req, err = read(startupPacket(80877104, nil))
		require.NoError(t, err)
		require.True(t, req.GSSENC)
	})
	t.Run("cancel", func(t *testing.T) {
		req, err := read(startupPacket(80877102, []byte{0, 0, 0, 7, 1, 2, 3, 4}))
		require.NoError(t, err)
		require.EqualValues(t, 7, req.Cancel.ProcessID)
		require.Equal(t, []byte{1, 2, 3, 4}, req.Cancel.SecretKey)
	})
	t.Run("newer minor version is negotiated down", func(t *testing.T) {
		req, err := read(startupPacket(3<<16|2, params("user", "u", "_pq_.foo", "1")))
		require.NoError(t, err)
		require.True(t, req.NeedsNegotiation())
		require.Equal(t, []string{"_pq_.foo"}, req.NegotiateMessage().UnrecognizedOptions)
		require.NotContains(t, req.Startup.Parameters, "_pq_.foo")
	})
	bad := []struct {
		name string
		pkt  []byte
		code string
	}{
		{"protocol 2", startupPacket(2<<16, params("user", "u")), protocol.CodeFeatureNotSupported},
		{"no user", startupPacket(3<<16, params("database", "d")), protocol.CodeInvalidAuthorization},
		{"missing terminator", startupPacket(3<<16, []byte("user\x00u\x00")), protocol.CodeProtocolViolation},
		{"too long", startupPacket(3<<16, bytes.Repeat([]byte("a"), 20_000)), protocol.CodeProtocolViolation},
		{"too short", []byte{0, 0, 0, 4}, protocol.CodeProtocolViolation},
		{"duplicate key", startupPacket(3<<16, params("user", "u", "user", "v")), protocol.CodeProtocolViolation},
		{"ssl with payload", startupPacket(80877103, []byte{1}), protocol.CodeProtocolViolation},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(tc.pkt)
			var pe *protocol.Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tc.code, pe.Code)
			require.True(t, pe.Fatal())
		})
	}
}

func TestParseOptions(t *testing.T) {
	got, err := protocol.ParseOptions(`-c search_path=a,b --work-mem=4MB -capplication_name=x\ y`)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"search_path": "a,b", "work_mem": "4MB", "application_name": "x y"}, got)
	_, err = protocol.ParseOptions("-d 5")
	require.Error(t, err)
	_, err = protocol.ParseOptions("-c")
	require.Error(t, err)
}

func FuzzParseStartupPacket(f *testing.F) {
	f.Add(startupPacket(3<<16, params("user", "a", "database", "b"))[4:])
	f.Add(startupPacket(80877102, []byte{0, 0, 0, 1, 2, 2, 2, 2})[4:])
	f.Add(startupPacket(80877103, nil)[4:])
	f.Add([]byte{0, 3, 0, 0, 'u', 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := protocol.ParseStartupPacket(body)
		if err != nil {
			return
		}
		if req.Startup != nil {
			if _, ok := req.Startup.Parameters["user"]; !ok {
				t.Fatal("accepted a startup packet without user")
			}
		}
	})
}
