package protocol_test

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/protocol"
)

func encode(t testing.TB, m pgproto3.Message) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	require.NoError(t, err)
	return b
}

func TestAppendParse(t *testing.T) {
	types := []byte{0, 2, 0, 0, 0, 23, 0, 0, 0, 25}
	got := protocol.AppendParse([]byte("prefix"), "s1", "SELECT $1, $2", types)
	require.Equal(t, "prefix", string(got[:6]))
	want := encode(t, &pgproto3.Parse{Name: "s1", Query: "SELECT $1, $2", ParameterOIDs: []uint32{23, 25}})
	require.Equal(t, want, got[6:])

	name, query, ts, ok := protocol.ParseParse(got[6+protocol.HeaderLen:])
	require.True(t, ok)
	require.Equal(t, "s1", string(name))
	require.Equal(t, "SELECT $1, $2", string(query))
	require.Equal(t, types, ts)
}

func TestAppendClose(t *testing.T) {
	for _, kind := range []byte{'S', 'P'} {
		got := protocol.AppendClose(nil, kind, "stmt")
		require.Equal(t, encode(t, &pgproto3.Close{ObjectType: kind, Name: "stmt"}), got)
	}
}

func TestAppendDescribe(t *testing.T) {
	for _, kind := range []byte{'S', 'P'} {
		got := protocol.AppendDescribe(nil, kind, "stmt")
		require.Equal(t, encode(t, &pgproto3.Describe{ObjectType: kind, Name: "stmt"}), got)
	}
}

func TestAppendBind(t *testing.T) {
	client := encode(t, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s1",
		ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 7}, nil}, ResultFormatCodes: []int16{0, 1}})
	portal, rest, ok := protocol.CString(client[protocol.HeaderLen:])
	require.True(t, ok)
	_, params, ok := protocol.CString(rest)
	require.True(t, ok)

	got := protocol.AppendBind([]byte("x"), portal, "cmpool_1", params)
	require.Equal(t, "x", string(got[:1]))
	require.Equal(t, encode(t, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "cmpool_1",
		ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 7}, nil}, ResultFormatCodes: []int16{0, 1}}), got[1:])
}

func TestParseParseRejects(t *testing.T) {
	for name, body := range map[string][]byte{
		"empty":              nil,
		"no query end":       []byte("s\x00select"),
		"no type count":      []byte("s\x00select\x00"),
		"half a type count":  []byte("s\x00select\x00\x00"),
		"too few type OIDs":  []byte("s\x00select\x00\x00\x01\x00\x00\x00"),
		"too many type OIDs": []byte("s\x00select\x00\x00\x00\x00\x00\x00\x17"),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, ok := protocol.ParseParse(body)
			require.False(t, ok)
		})
	}
}

func TestCString(t *testing.T) {
	s, rest, ok := protocol.CString([]byte("abc\x00def\x00"))
	require.True(t, ok)
	require.Equal(t, "abc", string(s))
	require.Equal(t, "def\x00", string(rest))

	s, rest, ok = protocol.CString([]byte("\x00"))
	require.True(t, ok)
	require.Empty(t, s)
	require.Empty(t, rest)

	_, _, ok = protocol.CString([]byte("abc"))
	require.False(t, ok)
}

func TestParseParameterStatus(t *testing.T) {
	msg := encode(t, &pgproto3.ParameterStatus{Name: "TimeZone", Value: "Europe/Paris"})
	name, value, ok := protocol.ParseParameterStatus(msg[protocol.HeaderLen:])
	require.True(t, ok)
	require.Equal(t, "TimeZone", name)
	require.Equal(t, "Europe/Paris", value)

	for _, bad := range []string{"", "TimeZone", "TimeZone\x00UTC"} {
		_, _, ok := protocol.ParseParameterStatus([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
}

func TestDecodeDataRow(t *testing.T) {
	msg := encode(t, &pgproto3.DataRow{Values: [][]byte{[]byte("t"), nil, []byte("")}})
	row, err := protocol.DecodeDataRow(msg[protocol.HeaderLen:])
	require.NoError(t, err)
	require.Equal(t, []string{"t", "", ""}, row)

	_, err = protocol.DecodeDataRow([]byte{0, 1, 0, 0, 0, 9, 'x'})
	require.Error(t, err)
}

func TestReplaceErrorMessage(t *testing.T) {
	msg := encode(t, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42P05",
		Message: `prepared statement "cmpool_7" already exists`})
	got := protocol.ReplaceErrorMessage(msg[protocol.HeaderLen:], `prepared statement "s1" already exists`)
	require.NotNil(t, got)
	var er pgproto3.ErrorResponse
	require.NoError(t, er.Decode(got[protocol.HeaderLen:]))
	require.Equal(t, "42P05", er.Code)
	require.Equal(t, "ERROR", er.Severity)
	require.Equal(t, `prepared statement "s1" already exists`, er.Message)
	require.Equal(t, "42P05", protocol.ErrorCode(got[protocol.HeaderLen:]))

	require.Nil(t, protocol.ReplaceErrorMessage([]byte("Cx"), "m"), "a field with no terminator")
}

func FuzzParseParse(f *testing.F) {
	f.Add([]byte("s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17"))
	f.Add([]byte("\x00\x00\x00\x00"))
	f.Add([]byte("s\x00select\x00\x00\x02\x00\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		name, query, types, ok := protocol.ParseParse(body)
		if !ok {
			return
		}
		// What parses rebuilds into the same bytes, and pgproto3 reads it the same way.
		msg := protocol.AppendParse(nil, string(name), string(query), types)
		if !bytes.Equal(msg[protocol.HeaderLen:], body) {
			t.Fatalf("rebuilt %q from %q", msg[protocol.HeaderLen:], body)
		}
		var p pgproto3.Parse
		if err := p.Decode(body); err != nil {
			t.Fatalf("pgproto3 refuses what ParseParse accepts: %v", err)
		}
		if p.Name != string(name) || p.Query != string(query) || 2+4*len(p.ParameterOIDs) != len(types) {
			t.Fatalf("pgproto3 reads %+v", p)
		}
	})
}

func FuzzParseParameterStatus(f *testing.F) {
	f.Add([]byte("TimeZone\x00UTC\x00"))
	f.Add([]byte("\x00\x00"))
	f.Add([]byte("a\x00b"))
	f.Fuzz(func(t *testing.T, body []byte) {
		name, value, ok := protocol.ParseParameterStatus(body)
		if !ok {
			return
		}
		want := name + "\x00" + value + "\x00"
		if !bytes.HasPrefix(body, []byte(want)) || bytes.IndexByte([]byte(name+value), 0) >= 0 {
			t.Fatalf("read %q, %q from %q", name, value, body)
		}
	})
}

func FuzzDecodeDataRow(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 0, 1, 't', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 1, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		row, err := protocol.DecodeDataRow(body)
		if err != nil {
			return
		}
		var dr pgproto3.DataRow
		if err := dr.Decode(body); err != nil || len(dr.Values) != len(row) {
			t.Fatalf("%d values, pgproto3 says %d (%v)", len(row), len(dr.Values), err)
		}
	})
}
