package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/protocol"
)

func frame(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

func TestFrameReader(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 100_000)
	stream := bytes.Join([][]byte{
		frame('Q', []byte("select 1\x00")),
		frame('D', big),
		frame('Z', []byte{'I'}),
		frame('S', nil),
	}, nil)

	t.Run("forward copies frames byte for byte", func(t *testing.T) {
		fr := protocol.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(stream), 4096), 0)
		var out bytes.Buffer
		for {
			_, err := fr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			require.NoError(t, fr.Forward(&out))
		}
		require.Equal(t, stream, out.Bytes())
	})

	t.Run("body, message and skip", func(t *testing.T) {
		fr := protocol.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(stream), 4096), 0)
		f, err := fr.Next()
		require.NoError(t, err)
		require.Equal(t, protocol.Frame{Type: 'Q', BodyLen: 9}, f)
		body, err := fr.Body()
		require.NoError(t, err)
		require.Equal(t, "select 1\x00", string(body))

		f, err = fr.Next()
		require.NoError(t, err)
		require.Equal(t, byte('D'), f.Type)
		msg, err := fr.Message() // larger than the buffer
		require.NoError(t, err)
		require.Equal(t, frame('D', big), msg)

		_, err = fr.Next()
		require.NoError(t, err)
		// Next without consuming skips the frame.
		f, err = fr.Next()
		require.NoError(t, err)
		require.Equal(t, protocol.Frame{Type: 'S'}, f)
		require.NoError(t, fr.Skip())
		_, err = fr.Next()
		require.ErrorIs(t, err, io.EOF)
	})

	t.Run("limit", func(t *testing.T) {
		fr := protocol.NewFrameReader(bufio.NewReader(bytes.NewReader(stream)), 1000)
		_, err := fr.Next()
		require.NoError(t, err)
		_, err = fr.Next()
		require.ErrorIs(t, err, protocol.ErrMessageTooLarge)
	})

	t.Run("bad length", func(t *testing.T) {
		fr := protocol.NewFrameReader(bufio.NewReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 3})), 0)
		_, err := fr.Next()
		var fe *protocol.FrameError
		require.ErrorAs(t, err, &fe)
	})

	t.Run("truncated", func(t *testing.T) {
		fr := protocol.NewFrameReader(bufio.NewReader(bytes.NewReader(stream[:7])), 0)
		_, err := fr.Next()
		require.NoError(t, err)
		_, err = fr.Body()
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)

		fr = protocol.NewFrameReader(bufio.NewReader(bytes.NewReader(stream[:3])), 0)
		_, err = fr.Next()
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	})
}

func FuzzFrameReader(f *testing.F) {
	f.Add(frame('Q', []byte("select 1\x00")))
	f.Add(append(frame('P', []byte("\x00select\x00\x00\x00")), frame('S', nil)...))
	f.Add([]byte{'X', 0, 0, 0, 4})
	f.Add([]byte{'D', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Forwarding every frame reproduces a prefix of the input, byte for byte.
		fr := protocol.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(data), 16), 1<<16)
		var out bytes.Buffer
		for {
			f, err := fr.Next()
			if err != nil {
				break
			}
			if f.BodyLen < 0 || f.BodyLen > 1<<16 {
				t.Fatalf("frame body length %d escaped the limit", f.BodyLen)
			}
			if err := fr.Forward(&out); err != nil {
				break
			}
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatal("forwarded bytes differ from the input")
		}
		// Reading bodies agrees with the headers.
		fr = protocol.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(data), 16), 1<<16)
		for {
			f, err := fr.Next()
			if err != nil {
				break
			}
			b, err := fr.Body()
			if err != nil {
				break
			}
			if len(b) != f.BodyLen {
				t.Fatalf("body %d bytes, header said %d", len(b), f.BodyLen)
			}
		}
	})
}

// BenchmarkForward is the relay's inner loop: a DataRow-sized frame peeked and copied to
// a buffered writer.
func BenchmarkForward(b *testing.B) {
	msg := frame('D', bytes.Repeat([]byte("x"), 100))
	stream := bytes.Repeat(msg, 1000)
	r := bytes.NewReader(stream)
	br := bufio.NewReaderSize(r, 32<<10)
	fr := protocol.NewFrameReader(br, 0)
	w := bufio.NewWriterSize(io.Discard, 16<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		if _, err := fr.Next(); err != nil {
			r.Reset(stream)
			br.Reset(r)
			if _, err := fr.Next(); err != nil {
				b.Fatal(err)
			}
		}
		if err := fr.Forward(w); err != nil {
			b.Fatal(err)
		}
	}
}
