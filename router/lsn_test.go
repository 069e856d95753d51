package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestLSNParseAndFormat(t *testing.T) {
	tests := []struct {
		in   string
		want router.LSN
		text string // String(); empty means in
	}{
		{in: "0/0", want: 0},
		{in: "0/1", want: 1},
		{in: "16/B374D848", want: 0x16_B374D848},
		{in: "16/b374d848", want: 0x16_B374D848, text: "16/B374D848"},
		{in: "0/3000148", want: 0x3000148},
		{in: "FFFFFFFF/FFFFFFFF", want: ^router.LSN(0)},
		{in: "1/0", want: 1 << 32},
		{in: "00000001/00000010", want: 1<<32 | 0x10, text: "1/10"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := router.ParseLSN(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			text := tt.text
			if text == "" {
				text = tt.in
			}
			require.Equal(t, text, got.String())
			again, err := router.ParseLSN(got.String())
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

func TestLSNParseErrors(t *testing.T) {
	for _, in := range []string{
		"", "/", "0", "0/", "/0", "16B374D848", "1/2/3", "G/0", "0/G", "-1/0", "+1/0", "0x1/0",
		"1 /0", " 1/0", "1/0 ", "100000000/0", "0/100000000", "123456789/1",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := router.ParseLSN(in)
			require.ErrorIs(t, err, router.ErrInvalidLSN)
		})
	}
}

func TestLSNOrder(t *testing.T) {
	a, err := router.ParseLSN("0/FFFFFFFF")
	require.NoError(t, err)
	b, err := router.ParseLSN("1/0")
	require.NoError(t, err)
	require.Less(t, a, b)
	require.Equal(t, router.LSN(1), b-a)
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "ffffffff/ffffffff", "1/2/3", "", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := router.ParseLSN(s)
		if err != nil {
			return
		}
		again, err := router.ParseLSN(l.String())
		require.NoError(t, err)
		require.Equal(t, l, again)
	})
}

func BenchmarkLSNString(b *testing.B) {
	l := router.LSN(0x16_B374D848)
	b.ReportAllocs()
	for b.Loop() {
		_ = l.String()
	}
}
