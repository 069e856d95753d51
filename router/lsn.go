package router

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL WAL position (pg_lsn). Its text form is two hexadecimal numbers, the
// high and the low 32 bits, such as "16/B374D848". The zero LSN, "0/0", means "none".
type LSN uint64

// ErrInvalidLSN is wrapped by ParseLSN's errors.
var ErrInvalidLSN = errors.New("invalid LSN")

// ParseLSN parses the text form of a pg_lsn, such as "16/B374D848". Each half is one to eight
// hexadecimal digits, in either case.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("%w %q: want X/Y", ErrInvalidLSN, s)
	}
	h, err := parseLSNHalf(hi)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %v", ErrInvalidLSN, s, err)
	}
	l, err := parseLSNHalf(lo)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %v", ErrInvalidLSN, s, err)
	}
	return LSN(h<<32 | l), nil
}

// parseLSNHalf parses one half of an LSN: 1 to 8 hexadecimal digits, without sign or prefix.
func parseLSNHalf(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 8 {
		return 0, fmt.Errorf("want 1 to 8 hexadecimal digits, got %q", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return 0, fmt.Errorf("%q is not hexadecimal", s)
		}
	}
	return strconv.ParseUint(s, 16, 32)
}

// String returns the LSN as PostgreSQL prints it: upper-case hexadecimal, "16/B374D848".
func (l LSN) String() string {
	var b [17]byte
	out := strconv.AppendUint(b[:0], uint64(l)>>32, 16)
	out = append(out, '/')
	out = strconv.AppendUint(out, uint64(l)&0xFFFFFFFF, 16)
	for i, c := range out {
		if 'a' <= c && c <= 'f' {
			out[i] = c - 'a' + 'A'
		}
	}
	return string(out)
}
