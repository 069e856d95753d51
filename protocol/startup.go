package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Limits on the untyped startup packet, as in PostgreSQL's postmaster.
const (
	MinStartupPacketLen = 8      // length word plus request code
	MaxStartupPacketLen = 10_000 // MAX_STARTUP_PACKET_LENGTH
)

// Request codes carried where a StartupMessage has its protocol version.
const (
	codeCancelRequest  = 80877102
	codeSSLRequest     = 80877103
	codeGSSENCRequest  = 80877104
	protocolVersion30  = 3 << 16
	protocolMajorShift = 16
)

// StartupRequest is one untyped packet a client sends before its StartupMessage completes.
// Exactly one of the pointer fields is set, or SSL/GSSENC is true.
type StartupRequest struct {
	SSL     bool                     // SSLRequest
	GSSENC  bool                     // GSSENCRequest
	Cancel  *pgproto3.CancelRequest  // CancelRequest
	Startup *pgproto3.StartupMessage // StartupMessage; ProtocolVersion is always 3.0 here
	// UnsupportedOptions lists the "_pq_." protocol options the client asked for, and
	// NegotiateMinor is non-zero when the client asked for protocol 3.x with x > 0: the
	// server then answers NegotiateProtocolVersion (see NegotiateMessage).
	UnsupportedOptions []string
	RequestedMinor     uint16
}

// ReadStartupRequest reads one untyped startup packet from r and parses it.
func ReadStartupRequest(r io.Reader) (*StartupRequest, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(lenBuf[:])))
	if n < MinStartupPacketLen || n > MaxStartupPacketLen {
		return nil, NewFatal(CodeProtocolViolation, fmt.Sprintf("invalid length of startup packet: %d", n))
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, unexpected(err)
	}
	return ParseStartupPacket(body)
}

// ParseStartupPacket parses the body of a startup packet (everything after the length word).
func ParseStartupPacket(body []byte) (*StartupRequest, error) {
	if len(body) < 4 {
		return nil, NewFatal(CodeProtocolViolation, "startup packet too short")
	}
	code := binary.BigEndian.Uint32(body)
	switch code {
	case codeSSLRequest:
		if len(body) != 4 {
			return nil, NewFatal(CodeProtocolViolation, "invalid SSLRequest length")
		}
		return &StartupRequest{SSL: true}, nil
	case codeGSSENCRequest:
		if len(body) != 4 {
			return nil, NewFatal(CodeProtocolViolation, "invalid GSSENCRequest length")
		}
		return &StartupRequest{GSSENC: true}, nil
	case codeCancelRequest:
		var cr pgproto3.CancelRequest
		if err := cr.Decode(body); err != nil {
			return nil, NewFatal(CodeProtocolViolation, "invalid CancelRequest: "+err.Error())
		}
		return &StartupRequest{Cancel: &cr}, nil
	}
	major := code >> protocolMajorShift
	minor := uint16(code)
	if major != 3 {
		return nil, NewFatal(CodeFeatureNotSupported, fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", major, minor))
	}
	params, err := parseStartupParams(body[4:])
	if err != nil {
		return nil, err
	}
	req := &StartupRequest{
		Startup:        &pgproto3.StartupMessage{ProtocolVersion: protocolVersion30, Parameters: params},
		RequestedMinor: minor,
	}
	for k := range params {
		if strings.HasPrefix(k, "_pq_.") {
			req.UnsupportedOptions = append(req.UnsupportedOptions, k)
			delete(params, k)
		}
	}
	if _, ok := params["user"]; !ok {
		return nil, NewFatal(CodeInvalidAuthorization, "no PostgreSQL user name specified in startup packet")
	}
	return req, nil
}

// NeedsNegotiation reports whether the server must answer NegotiateProtocolVersion.
func (r *StartupRequest) NeedsNegotiation() bool {
	return r.Startup != nil && (r.RequestedMinor > 0 || len(r.UnsupportedOptions) > 0)
}

// NegotiateMessage returns the NegotiateProtocolVersion message offering protocol 3.0.
func (r *StartupRequest) NegotiateMessage() *pgproto3.NegotiateProtocolVersion {
	return &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: r.UnsupportedOptions}
}

var errBadParams = NewFatal(CodeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")

// parseStartupParams parses NUL-terminated name/value pairs ending with an empty name.
func parseStartupParams(b []byte) (map[string]string, error) {
	params := make(map[string]string, 8)
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return nil, errBadParams
		}
		if i == 0 {
			if len(b) != 1 {
				return nil, errBadParams
			}
			return params, nil
		}
		key := string(b[:i])
		b = b[i+1:]
		j := bytes.IndexByte(b, 0)
		if j < 0 {
			return nil, errBadParams
		}
		if _, dup := params[key]; dup {
			return nil, NewFatal(CodeProtocolViolation, fmt.Sprintf("duplicate startup parameter %q", key))
		}
		params[key] = string(b[:j])
		b = b[j+1:]
	}
}

// ParseOptions splits a startup "options" value into its -c name=value settings, as the
// backend does ("-c a=b --c=d" and backslash-escaped spaces). Other switches are returned
// as an error, since a pooler cannot apply them per transaction.
func ParseOptions(s string) (map[string]string, error) {
	words := splitOptions(s)
	out := make(map[string]string)
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c":
			if i+1 >= len(words) {
				return nil, errors.New("-c needs name=value")
			}
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return nil, fmt.Errorf("unsupported startup option %q (only -c name=value is supported)", w)
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid startup option %q: want name=value", kv)
		}
		out[strings.ReplaceAll(k, "-", "_")] = v
	}
	return out, nil
}

func splitOptions(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, esc := false, false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
			inWord = true
		case r == '\\':
			esc = true
			inWord = true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
