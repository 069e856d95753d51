package protocol

import (
	"bytes"
	"encoding/binary"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Builders and parsers for the messages cmpool rewrites or reads itself.

// AppendParse appends a Parse message. types is the parameter-type section as sent by the
// client (int16 count then the OIDs).
func AppendParse(dst []byte, name, query string, types []byte) []byte {
	start := len(dst)
	dst = append(dst, 'P', 0, 0, 0, 0)
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, query...)
	dst = append(dst, 0)
	dst = append(dst, types...)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// AppendClose appends a Close of a statement ('S') or portal ('P').
func AppendClose(dst []byte, kind byte, name string) []byte {
	return appendTarget(dst, 'C', kind, name)
}

// AppendDescribe appends a Describe of a statement ('S') or portal ('P').
func AppendDescribe(dst []byte, kind byte, name string) []byte {
	return appendTarget(dst, 'D', kind, name)
}

// appendTarget appends a message of type typ whose body names one statement ('S') or
// portal ('P'): Close and Describe.
func appendTarget(dst []byte, typ, kind byte, name string) []byte {
	start := len(dst)
	dst = append(dst, typ, 0, 0, 0, 0, kind)
	dst = append(dst, name...)
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// AppendBind appends a Bind of portal to statement stmt. params is the rest of a Bind
// body as the client sent it, after the statement name: formats, values and result
// formats.
func AppendBind(dst, portal []byte, stmt string, params []byte) []byte {
	start := len(dst)
	dst = append(dst, 'B', 0, 0, 0, 0)
	dst = append(dst, portal...)
	dst = append(dst, 0)
	dst = append(dst, stmt...)
	dst = append(dst, 0)
	dst = append(dst, params...)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// CString splits a NUL-terminated string off b.
func CString(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// ParseParse splits a Parse body into name, query and the parameter-type section.
func ParseParse(body []byte) (name, query, types []byte, ok bool) {
	name, rest, ok := CString(body)
	if !ok {
		return
	}
	query, types, ok = CString(rest)
	if !ok || len(types) < 2 {
		return nil, nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(types))
	if len(types) != 2+4*n {
		return nil, nil, nil, false
	}
	return name, query, types, true
}

// DecodeDataRow decodes a DataRow of text values; NULL becomes "".
func DecodeDataRow(body []byte) ([]string, error) {
	var dr pgproto3.DataRow
	if err := dr.Decode(body); err != nil {
		return nil, err
	}
	row := make([]string, len(dr.Values))
	for i, v := range dr.Values {
		row[i] = string(v)
	}
	return row, nil
}

// ParseParameterStatus splits a ParameterStatus body into name and value.
func ParseParameterStatus(body []byte) (name, value string, ok bool) {
	n, rest, ok := CString(body)
	if !ok {
		return "", "", false
	}
	v, _, ok := CString(rest)
	if !ok {
		return "", "", false
	}
	return string(n), string(v), true
}

// ReplaceErrorMessage returns the ErrorResponse whose body is body with its message
// replaced by msg, header included, or nil when body is not an ErrorResponse.
func ReplaceErrorMessage(body []byte, msg string) []byte {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return nil
	}
	er.Message = msg
	out, err := er.Encode(nil)
	if err != nil {
		return nil
	}
	return out
}
