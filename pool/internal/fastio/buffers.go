package fastio

import (
	"bufio"
	"errors"
	"io"
	"sync"
)

// A client's read and write buffers are held only while they hold data. Most clients of a
// pooler are idle most of the time, and PgBouncer keeps no buffer for an idle client; with
// a buffer each way held for the life of the connection, 10,000 idle clients would hold
// 160 MiB of buffers.
//
//   - Reader takes its buffer from readBufs for each read and, on a socket read
//     through New, gives it back when the read finds nothing to read and nothing is
//     buffered: the wait for the client's next message holds no buffer. The hand-back
//     happens inside the read's readiness wait, so it costs no system call.
//   - Writer takes a bufio.Writer from writeBufs at the first Write and gives it
//     back at the Flush that empties it.
//
// Both pools are sync.Pools: free buffers go to the garbage collector after two collections
// with no use, and under load a Get and a Put per request are the whole cost (no
// allocation).

// BufSize is the size of a client's read buffer and of its write buffer.
const BufSize = 8 * 1024

var (
	readBufs  = sync.Pool{New: func() any { return new([BufSize]byte) }}
	writeBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, BufSize) }}
)

// maxEmptyReads is how many reads that return nothing and no error Peek and Discard
// accept in a row, as bufio.Reader.
const maxEmptyReads = 100

// releasingSource is a source that can read into a Reader's buffer, taking it for
// each read attempt and giving it back (when empty) before waiting for the socket: the
// raw socket I/O of New.
type releasingSource interface {
	ReadRelease(b ReleasingBuffer) (int, error)
}

var _ ReleasingBuffer = (*Reader)(nil)

// Reader is a buffered reader with bufio.Reader's semantics for the methods
// protocol.FrameReader and the startup code use, whose buffer is released while empty; see
// above. It is used by the client's goroutine only.
type Reader struct {
	src io.Reader
	rel releasingSource // src, when it is one
	buf *[BufSize]byte
	r   int // read position in buf
	w   int // write position in buf
	err error
}

func NewReader(src io.Reader) *Reader {
	b := &Reader{}
	b.Reset(src)
	return b
}

// Reset makes b read from src. Buffered data is dropped.
func (b *Reader) Reset(src io.Reader) {
	b.r, b.w = 0, 0
	b.ReleaseIfEmpty()
	b.src, b.err = src, nil
	b.rel, _ = src.(releasingSource)
}

// Size is the largest Peek.
func (b *Reader) Size() int { return BufSize }

// Buffered is how many bytes can be read without reading the source.
func (b *Reader) Buffered() int { return b.w - b.r }

// held reports whether b holds a buffer, for tests.
func (b *Reader) held() bool { return b.buf != nil }

// take makes sure b has a buffer.
func (b *Reader) take() {
	if b.buf == nil {
		b.buf = readBufs.Get().(*[BufSize]byte)
		b.r, b.w = 0, 0
	}
}

// Free takes a buffer if needed and returns its free space, for a ReadRelease.
func (b *Reader) Free() []byte {
	b.take()
	return b.buf[b.w:]
}

// ReleaseIfEmpty gives the buffer back when it holds no data.
func (b *Reader) ReleaseIfEmpty() {
	if b.buf != nil && b.r == b.w {
		readBufs.Put(b.buf)
		b.buf = nil
		b.r, b.w = 0, 0
	}
}

// fill reads once from the source, after the buffered bytes, which it first moves to the
// start of the buffer. A source that returns nothing and no error gets up to tries tries,
// then fill fails with io.ErrNoProgress.
func (b *Reader) fill(tries int) {
	b.take()
	if b.r > 0 {
		copy(b.buf[:], b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	for range tries {
		var n int
		var err error
		if b.rel != nil {
			n, err = b.rel.ReadRelease(b)
		} else {
			n, err = b.src.Read(b.buf[b.w:])
		}
		if n < 0 || n > BufSize-b.w {
			panic("pool: invalid read count")
		}
		b.w += n
		if err != nil {
			b.err = err
			break
		}
		if n > 0 {
			break
		}
	}
	if b.r == b.w && b.err == nil && tries > 1 {
		b.err = io.ErrNoProgress
	}
	if b.r == b.w {
		// A read that failed (a deadline, EOF) leaves nothing buffered.
		b.ReleaseIfEmpty()
	}
}

// nowSource is a source that can read without waiting (the raw socket I/O of New).
type nowSource interface {
	ReadReleaseNow(b ReleasingBuffer) (int, error)
}

// FillNow reads once from the source if that does not wait, and reports whether it read
// anything, or an error (kept for the next read, as any read error). It reports false when
// the socket has nothing yet, or when the source cannot be read without waiting.
func (b *Reader) FillNow() bool {
	src, ok := b.src.(nowSource)
	if !ok || b.err != nil {
		return b.err != nil
	}
	b.take()
	if b.r > 0 {
		copy(b.buf[:], b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	n, err := src.ReadReleaseNow(b)
	if n < 0 || n > BufSize-b.w {
		panic("pool: invalid read count")
	}
	b.w += n
	if errors.Is(err, ErrWouldBlock) {
		b.ReleaseIfEmpty()
		return false
	}
	if err != nil {
		b.err = err
	}
	if b.r == b.w {
		b.ReleaseIfEmpty()
	}
	return true
}

// readErr returns the pending read error and clears it, as bufio.Reader does.
func (b *Reader) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// Peek returns the next n bytes without consuming them; see bufio.Reader.Peek.
func (b *Reader) Peek(n int) ([]byte, error) {
	if n < 0 {
		return nil, bufio.ErrNegativeCount
	}
	for b.w-b.r < min(n, BufSize) && b.err == nil {
		b.fill(maxEmptyReads)
	}
	if n > BufSize {
		return b.bytes(), bufio.ErrBufferFull
	}
	if b.w-b.r < n {
		return b.bytes(), b.readErr()
	}
	return b.bytes()[:n], nil
}

// bytes is the buffered data.
func (b *Reader) bytes() []byte {
	if b.buf == nil {
		return nil
	}
	return b.buf[b.r:b.w]
}

// Discard skips the next n bytes; see bufio.Reader.Discard.
func (b *Reader) Discard(n int) (int, error) {
	if n < 0 {
		return 0, bufio.ErrNegativeCount
	}
	rem := n
	for {
		skip := min(b.w-b.r, rem)
		b.r += skip
		rem -= skip
		if rem == 0 {
			return n, nil
		}
		if b.err != nil {
			return n - rem, b.readErr()
		}
		b.fill(maxEmptyReads)
	}
}

// Read reads up to len(p) bytes; see bufio.Reader.Read. A read at least as large as the
// buffer, with nothing buffered, goes straight to p.
func (b *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		if b.Buffered() > 0 {
			return 0, nil
		}
		return 0, b.readErr()
	}
	if b.r == b.w {
		if b.err != nil {
			return 0, b.readErr()
		}
		if len(p) >= BufSize {
			return b.src.Read(p)
		}
		b.fill(1) // one read, as bufio.Reader.Read
		if b.r == b.w {
			return 0, b.readErr()
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// Writer is a buffered writer to the client that holds a bufio.Writer from
// writeBufs only while it has unflushed data. Like the bufio.Writer it replaces, it is used
// under the client's write lock or by the one goroutine that owns the client's writes.
type Writer struct {
	dst io.Writer
	w   *bufio.Writer // nil while nothing is buffered
}

func NewWriter(dst io.Writer) *Writer { return &Writer{dst: dst} }

// DropBuffered drops what is buffered and not yet flushed.
func (cw *Writer) DropBuffered() { cw.Reset(cw.dst) }

// Reset makes cw write to dst. Unflushed data is dropped.
func (cw *Writer) Reset(dst io.Writer) {
	cw.dst = dst
	if cw.w != nil {
		cw.w.Reset(nil)
		writeBufs.Put(cw.w)
		cw.w = nil
	}
}

// held reports whether cw holds a buffer, for tests.
func (cw *Writer) held() bool { return cw.w != nil }

func (cw *Writer) Write(p []byte) (int, error) {
	if cw.w == nil {
		cw.w = writeBufs.Get().(*bufio.Writer)
		cw.w.Reset(cw.dst)
	}
	return cw.w.Write(p)
}

// Flush writes the buffered data out and, when that succeeds, gives the buffer back. After
// a failed write the writer keeps its error, as a bufio.Writer does.
func (cw *Writer) Flush() error {
	if cw.w == nil {
		return nil
	}
	if err := cw.w.Flush(); err != nil {
		return err
	}
	cw.w.Reset(nil)
	writeBufs.Put(cw.w)
	cw.w = nil
	return nil
}
