// Package fastio reads and writes TCP and Unix sockets with raw system calls, for the
// client and server connections cmpool relays between.
package fastio

import (
	"bufio"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// New returns what the relay's buffered reader and writer should do their I/O through
// for conn. For a TCP or Unix socket that is a rawIO: reads and writes go straight to the
// non-blocking socket as raw system calls, and only a read that would block or a write
// that does not fit waits for the runtime's poller.
//
// Why: a write on a loopback socket runs the receiver's TCP processing and usually wakes
// (and is preempted by) the receiving process, so it often spends more than the runtime
// monitor's 20 µs tick in the kernel. The runtime then hands the goroutine's P to another
// thread, and the monitor keeps ticking every 20 µs; under pgbench that was a third of
// cmpool's CPU. A raw system call keeps the P, and the monitor backs off. The system calls
// made here never block: the socket is non-blocking.
func New(conn net.Conn) io.ReadWriter {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn
	}
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return conn
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return conn
	}
	r := &rawIO{conn: conn, rc: rc}
	// Bound once: a closure per call would be allocated per call.
	r.readFn, r.writeFn, r.awaitFn = r.readSyscall, r.writeSyscall, r.awaitSyscall
	return r
}

// rawIO reads and writes a socket with raw system calls; see New. One goroutine reads
// and one writes at a time (the relay's buffered reader and writer), so each direction
// keeps its call's state in the struct.
type rawIO struct {
	conn    net.Conn
	rc      syscall.RawConn
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool

	rbuf   []byte          // the Read in progress, or
	rrel   ReleasingBuffer // the ReadRelease in progress
	rn     int
	rerrno syscall.Errno

	wbuf   []byte // the Write in progress
	wn     int
	werrno syscall.Errno

	watch  Watcher // nil, or told about each read and each wait
	nowait bool    // the read in progress must not wait (ReadReleaseNow)

	awaitFn func(fd uintptr) bool
	aw      awaiting // the FlushAwaitingReply in progress
}

// awaiting is the state of a FlushAwaitingReply, the awaiting goroutine's alone.
type awaiting struct {
	w       *bufio.Writer
	held    *sync.Mutex
	started bool // the flush was made, inside the read call
	err     error
}

// Watch makes w watch rw's reads and waits, when rw is the raw socket I/O of New, and
// reports whether it is. Call it before rw is used, or from the goroutines that use it.
func Watch(rw io.ReadWriter, w Watcher) bool {
	r, ok := rw.(*rawIO)
	if ok {
		r.watch = w
	}
	return ok
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rbuf = p
	n, err := r.read()
	r.rbuf = nil
	return n, err
}

// ReadRelease reads once into b's free space, like Read, but takes the buffer only for
// each read attempt; see ReleasingBuffer.
func (r *rawIO) ReadRelease(b ReleasingBuffer) (int, error) {
	r.rrel = b
	n, err := r.read()
	r.rrel = nil
	return n, err
}

// ReadReleaseNow is ReadRelease that never waits: when the socket has nothing, it returns
// ErrWouldBlock at once.
func (r *rawIO) ReadReleaseNow(b ReleasingBuffer) (int, error) {
	r.rrel, r.nowait = b, true
	n, err := r.read()
	r.rrel, r.nowait = nil, false
	return n, err
}

func (r *rawIO) read() (int, error) {
	r.rn, r.rerrno = 0, 0
	err := r.rc.Read(r.readFn)
	n, errno := r.rn, r.rerrno
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case errno != 0:
		return 0, r.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readSyscall is one attempt of a read; false means the socket has nothing yet.
func (r *rawIO) readSyscall(fd uintptr) bool {
	p, b := r.rbuf, r.rrel
	if b != nil {
		p = b.Free()
	}
	w := r.watch
	for {
		if w != nil {
			w.ReadStart()
		}
		m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if b != nil {
				b.ReleaseIfEmpty()
			}
			if w != nil {
				w.ReadDone(true)
			}
			if r.nowait {
				r.rerrno = e
				return true
			}
			if w != nil {
				w.WillBlock()
			}
			return false
		}
		if w != nil {
			w.ReadDone(e != 0 || int(m) < len(p))
		}
		r.rn, r.rerrno = int(m), e
		return true
	}
}

func (r *rawIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.wbuf, r.wn, r.werrno = p, 0, 0
	err := r.rc.Write(r.writeFn)
	n, errno := r.wn, r.werrno
	r.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, r.opError("write", errno)
	}
	return n, nil
}

// writeSyscall writes what it can of the Write in progress; false means the socket is
// full and the rest must wait.
func (r *rawIO) writeSyscall(fd uintptr) bool {
	p := r.wbuf
	for r.wn < len(p) {
		m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[r.wn])), uintptr(len(p)-r.wn))
		switch e {
		case 0:
			r.wn += int(m)
		case syscall.EINTR:
		case syscall.EAGAIN:
			if r.watch != nil {
				r.watch.WillBlock()
			}
			return false
		default:
			r.werrno = e
			return true
		}
	}
	return true
}

// FlushAwaitingReply flushes w, whose writes go to rw, and then waits until rw's socket
// has something to read, without reading it; held, a lock the caller holds over w, is
// unlocked once w is flushed, before the wait. For a request whose reply the caller reads
// next: that read then finds the reply, where a read right after the write would find
// the socket empty (under load the usual case), costing a system call.
//
// Why not a read that waits after a plain flush: the runtime forgets the socket's
// readiness at the start of each read call, so a reply that arrived between the flush and
// that call would not wake it. Here the flush is made inside the read call, after that
// point, so every reply wakes the wait. The wait ends as a read would: data, the end of
// the stream, a deadline or a close; whatever ended it, the read that follows meets too.
// It must not be used where another goroutine may read rw meanwhile, nor where nothing
// answers what is flushed.
//
// Off the raw socket I/O of New (TLS, tests), it only flushes and unlocks held.
func FlushAwaitingReply(w *bufio.Writer, rw io.ReadWriter, held *sync.Mutex) error {
	r, ok := rw.(*rawIO)
	if !ok || w.Buffered() == 0 {
		err := w.Flush()
		held.Unlock()
		return err
	}
	a := &r.aw
	a.w, a.held, a.started, a.err = w, held, false, nil
	_ = r.rc.Read(r.awaitFn) // what ended the wait, the caller's next read meets too
	if !a.started {
		// The read call ended before its first attempt (the socket is closed, or a read
		// deadline has passed): flush as any flush, which meets what a write meets.
		a.err = w.Flush()
		held.Unlock()
	}
	err := a.err
	a.w, a.held, a.err = nil, nil, nil
	return err
}

// awaitSyscall is FlushAwaitingReply's attempt inside the read call: the first flushes
// and waits; the next means the socket is readable (or the wait was woken early, which
// the caller's read handles).
func (r *rawIO) awaitSyscall(fd uintptr) bool {
	a := &r.aw
	if a.started {
		return true
	}
	a.started = true
	a.err = a.w.Flush() // the write lock of the descriptor is apart from the read lock held here
	a.held.Unlock()
	if a.err != nil {
		return true
	}
	if r.watch != nil {
		r.watch.WillBlock()
	}
	return false
}

func (r *rawIO) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: r.conn.LocalAddr().Network(), Source: r.conn.LocalAddr(), Addr: r.conn.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
