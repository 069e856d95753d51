package fastio

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// chunkedReader returns its data in reads of the sizes in chunks, cycling; a zero size is
// a read that returns nothing and no error.
type chunkedReader struct {
	data   []byte
	chunks []byte
	i      int
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.chunks) > 0 {
		n = min(n, int(c.chunks[c.i%len(c.chunks)])*64)
		c.i++
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

// FuzzClientReader checks that Reader answers every call as bufio.Reader does, for
// the same data arriving in the same chunks.
func FuzzClientReader(f *testing.F) {
	f.Add(bytes.Repeat([]byte("abcdefgh"), 3000), []byte{1, 2, 200, 3}, []byte{0, 5, 1, 9, 2, 200, 0, 255, 1, 40})
	f.Add([]byte("Q\x00\x00\x00\x09select"), []byte{}, []byte{0, 5, 2, 4, 0, 1})
	f.Add(bytes.Repeat([]byte{1}, 20000), []byte{255, 0, 1}, []byte{2, 255, 2, 255, 1, 0, 0, 128})
	f.Fuzz(func(t *testing.T, data, chunks, ops []byte) {
		for i := range chunks {
			chunks[i] %= 140 // up to 8960 bytes a read, a little more than the buffer
		}
		want := bufio.NewReaderSize(&chunkedReader{data: data, chunks: bytes.Clone(chunks)}, BufSize)
		got := NewReader(&chunkedReader{data: data, chunks: bytes.Clone(chunks)})
		for i := 0; i+1 < len(ops); i += 2 {
			n := int(ops[i+1]) * 40 // up to 10200: past the buffer too
			switch ops[i] % 3 {
			case 0:
				wb, werr := want.Peek(n)
				gb, gerr := got.Peek(n)
				require.True(t, bytes.Equal(wb, gb), "Peek(%d): %d bytes, want %d", n, len(gb), len(wb))
				require.Equal(t, werr, gerr, "Peek(%d)", n)
			case 1:
				wn, werr := want.Discard(n)
				gn, gerr := got.Discard(n)
				require.Equal(t, wn, gn, "Discard(%d)", n)
				require.Equal(t, werr, gerr, "Discard(%d)", n)
			case 2:
				wp, gp := make([]byte, n), make([]byte, n)
				wn, werr := want.Read(wp)
				gn, gerr := got.Read(gp)
				require.Equal(t, wn, gn, "Read(%d)", n)
				require.True(t, bytes.Equal(wp[:wn], gp[:gn]), "Read(%d) data", n)
				require.Equal(t, werr, gerr, "Read(%d)", n)
			}
			require.Equal(t, want.Buffered(), got.Buffered())
		}
	})
}

// TestClientReaderReleasesWhileWaiting: on a socket, the read buffer goes back to the pool
// while a read waits for data, unless it holds part of a message.
func TestClientReaderReleasesWhileWaiting(t *testing.T) {
	a, b := tcpPair(t)
	r := NewReader(New(b))
	require.NotNil(t, r.rel, "a TCP socket is read through New")
	require.False(t, r.held(), "no buffer before the first read")

	_, err := a.Write([]byte("0123456789"))
	require.NoError(t, err)
	p, err := r.Peek(5)
	require.NoError(t, err)
	require.Equal(t, "01234", string(p))
	require.True(t, r.held())
	_, err = r.Discard(10)
	require.NoError(t, err)

	// Nothing to read: the wait holds no buffer, and ends at the deadline.
	require.NoError(t, b.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = r.Peek(5)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.False(t, r.held(), "the buffer went back for the wait")

	// Part of a message: the buffer holds it through the wait.
	_, err = a.Write([]byte("abc"))
	require.NoError(t, err)
	require.NoError(t, b.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	p, err = r.Peek(5)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Equal(t, "abc", string(p))
	require.True(t, r.held(), "buffered bytes keep the buffer")

	_, err = a.Write([]byte("de"))
	require.NoError(t, err)
	require.NoError(t, b.SetReadDeadline(time.Time{}))
	p, err = r.Peek(5)
	require.NoError(t, err)
	require.Equal(t, "abcde", string(p))

	// A read larger than the buffer goes straight to the caller.
	big := bytes.Repeat([]byte("x"), 3*BufSize)
	go func() { _, _ = a.Write(big) }()
	_, err = r.Discard(5)
	require.NoError(t, err)
	got := make([]byte, len(big))
	_, err = io.ReadFull(r, got)
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, got))

	require.NoError(t, a.Close())
	_, err = r.Peek(1)
	require.ErrorIs(t, err, io.EOF)
	require.False(t, r.held())
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("broken") }

func TestClientWriterReleasesAtFlush(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	require.NoError(t, w.Flush(), "nothing to flush")
	require.False(t, w.held())
	_, err := w.Write([]byte("hello "))
	require.NoError(t, err)
	require.True(t, w.held())
	require.Zero(t, out.Len(), "buffered until Flush")
	_, err = w.Write([]byte("world"))
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	require.False(t, w.held())
	require.Equal(t, "hello world", out.String())

	// A write larger than the buffer.
	big := bytes.Repeat([]byte("y"), 2*BufSize)
	_, err = w.Write(big)
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	require.Equal(t, 11+len(big), out.Len())

	// A failed flush keeps its error, and the buffer.
	w.Reset(errWriter{})
	_, err = w.Write([]byte("x"))
	require.NoError(t, err)
	require.Error(t, w.Flush())
	require.Error(t, w.Flush())
	require.True(t, w.held())
	w.Reset(&out)
	require.False(t, w.held())
	_, _ = w.Write([]byte("!"))
	require.NoError(t, w.Flush())
	require.Equal(t, byte('!'), out.Bytes()[out.Len()-1])
}
