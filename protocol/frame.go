// Package protocol holds the PostgreSQL wire helpers cmpool needs on top of pgproto3:
// startup negotiation, a pass-through frame reader, and error responses with SQLSTATEs.
// It imports nothing else of cmpool.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderLen is the size of a regular message header: one type byte and a 4-byte length
// that counts itself but not the type byte.
const HeaderLen = 5

// ErrMessageTooLarge is returned when a frame's body exceeds the reader's limit.
var ErrMessageTooLarge = errors.New("protocol: message too large")

// FrameError reports a frame whose header is malformed.
type FrameError struct {
	Type   byte
	Length int32
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("protocol: invalid length %d in message of type %q", e.Length, e.Type)
}

// Frame is the header of one message.
type Frame struct {
	Type byte
	// BodyLen is the body length in bytes (the wire length minus 4).
	BodyLen int
}

// FrameReader reads regular (typed) messages from a buffered stream without decoding them.
// After Next, the caller consumes the frame with exactly one of Body, Forward or Skip.
type FrameReader struct {
	r       BufferedReader
	maxBody int
	cur     Frame
	pending bool // a header was read and its body not yet consumed
}

// BufferedReader is what a FrameReader reads from: a *bufio.Reader, or a reader with the
// same buffering methods and semantics (Peek returns an error with fewer than n bytes only
// when reading failed, or bufio.ErrBufferFull when n exceeds Size).
type BufferedReader interface {
	io.Reader
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Buffered() int
	Size() int
}

// NewFrameReader returns a FrameReader over r. Frames whose body is larger than maxBody
// are refused with ErrMessageTooLarge; maxBody <= 0 means no limit besides the wire's.
func NewFrameReader(r BufferedReader, maxBody int) *FrameReader {
	if maxBody <= 0 {
		maxBody = 1<<31 - 1 - 4
	}
	return &FrameReader{r: r, maxBody: maxBody}
}

// Buffered reports how many bytes can be read without blocking.
func (f *FrameReader) Buffered() int { return f.r.Buffered() }

// Pending reports whether a message's header was read and its body not yet consumed.
func (f *FrameReader) Pending() bool { return f.pending }

// FrameBuffered reports whether the next frame is buffered whole, so that Next and
// reading the frame will not block. It is false while a frame is being read.
func (f *FrameReader) FrameBuffered() bool {
	n := f.r.Buffered()
	if f.pending || n < HeaderLen {
		return false
	}
	hdr, _ := f.r.Peek(HeaderLen)
	return n >= 1+int(binary.BigEndian.Uint32(hdr[1:]))
}

// Next reads the next frame header. If the previous frame was not consumed, its body is
// skipped first.
func (f *FrameReader) Next() (Frame, error) {
	if f.pending {
		if err := f.Skip(); err != nil {
			return Frame{}, err
		}
	}
	hdr, err := f.r.Peek(HeaderLen)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	n := int32(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 {
		return Frame{}, &FrameError{Type: hdr[0], Length: n}
	}
	fr := Frame{Type: hdr[0], BodyLen: int(n) - 4}
	if fr.BodyLen > f.maxBody {
		return fr, fmt.Errorf("%w: %d bytes in message of type %q (limit %d)", ErrMessageTooLarge, fr.BodyLen, fr.Type, f.maxBody)
	}
	f.cur = fr
	f.pending = true
	return fr, nil
}

// Message returns the whole current frame, header included, and consumes it. The slice is
// valid only until the next call on f. It fails for frames larger than the read buffer
// minus the header only if memory for them cannot be had.
func (f *FrameReader) Message() ([]byte, error) {
	if !f.pending {
		return nil, errors.New("protocol: Message without Next")
	}
	total := HeaderLen + f.cur.BodyLen
	f.pending = false
	if total <= f.r.Size() {
		b, err := f.r.Peek(total)
		if err != nil {
			return nil, unexpected(err)
		}
		_, _ = f.r.Discard(total)
		return b, nil
	}
	// Rare and large: not kept, so an idle connection does not hold the memory.
	b := make([]byte, total)
	if _, err := io.ReadFull(f.r, b); err != nil {
		return nil, unexpected(err)
	}
	return b, nil
}

// Body returns the current frame's body and consumes the frame. The slice is valid only
// until the next call on f.
func (f *FrameReader) Body() ([]byte, error) {
	m, err := f.Message()
	if err != nil {
		return nil, err
	}
	return m[HeaderLen:], nil
}

// Forward copies the current frame, header included, to w and consumes it. Large frames
// are streamed, never held whole in memory.
func (f *FrameReader) Forward(w io.Writer) error {
	if !f.pending {
		return errors.New("protocol: Forward without Next")
	}
	total := HeaderLen + f.cur.BodyLen
	if total <= f.r.Size() {
		b, err := f.r.Peek(total)
		if err != nil {
			f.pending = false
			return unexpected(err)
		}
		f.pending = false
		_, _ = f.r.Discard(total)
		_, err = w.Write(b)
		return err
	}
	f.pending = false
	_, err := io.CopyN(w, f.r, int64(total))
	return unexpected(err)
}

// Skip consumes the current frame without looking at it.
func (f *FrameReader) Skip() error {
	if !f.pending {
		return nil
	}
	f.pending = false
	_, err := f.r.Discard(HeaderLen + f.cur.BodyLen)
	return unexpected(err)
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
