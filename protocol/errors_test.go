package protocol_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/protocol"
)

func TestErrorCode(t *testing.T) {
	full := protocol.AppendErrorResponse(nil, &protocol.Error{Severity: "ERROR", Code: "22012", Message: "division by zero"})
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"error response", full[protocol.HeaderLen:], "22012"},
		{"no code field", []byte("SERROR\x00Mboom\x00\x00"), ""},
		{"truncated field", []byte("SERROR\x00C220"), ""},
		{"empty", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, protocol.ErrorCode(tc.body))
		})
	}
}

func FuzzErrorCode(f *testing.F) {
	f.Add([]byte("SERROR\x00C22012\x00Mx\x00\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		_ = protocol.ErrorCode(body)
	})
}
