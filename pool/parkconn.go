package pool

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/protocol"
)

// Parked clients without their net.Conn.
//
// A net.Conn costs more than its socket: Go's netFD, its two addresses, the runtime's poll
// descriptor and finalizer record, and the raw-I/O handle, about 800 bytes a client in all.
// A parked client needs none of it: it waits in the park set's epoll by descriptor. So a
// client that parks detaches its TCP socket (detach): it keeps a duplicate descriptor and
// its two addresses, and closes the connection, which closes only the original
// descriptor. When it resumes, it makes a new net.Conn of the descriptor (attach) before
// it reads again. The socket, its options and whatever the client sent meanwhile stay in
// the kernel throughout.
//
// Only the goroutine that runs the client detaches, attaches, and reads and writes Conn
// without a lock (the park set hands the client from one goroutine to the next). Anything
// else that touches the socket goes through wakeConn's methods, under mu: a deadline or a
// close asked for while the client is detached is kept, and applied by attach; the
// addresses are the ones kept.

// wakeConn is a client's socket as cmpool uses it: setting a read deadline on it, or
// closing it, resumes the client first if it is parked, so that its goroutine sees the
// deadline or the close.
type wakeConn struct {
	net.Conn // nil while detached
	c        *clientSession
	mu       sync.Mutex
	det      *detached // while parked without its connection
}

// detached is what a client parked without its connection keeps of it.
type detached struct {
	fd         int32 // a duplicate of the connection's descriptor
	rset, wset bool  // a read or write deadline was set while detached:
	closed     bool  // Close was called
	rdl, wdl   int64 // the deadlines, Unix ns; 0 for none
	raddr      tcpAddr
	laddr      tcpAddr
}

// tcpAddr is a TCP address without a zone, in 18 bytes (a netip.AddrPort takes 32).
type tcpAddr struct {
	ip   [16]byte
	port uint16
}

// compactAddr returns a as a tcpAddr; false if it has a zone.
func compactAddr(a *net.TCPAddr) (tcpAddr, bool) {
	ap := a.AddrPort()
	if ap.Addr().Zone() != "" {
		return tcpAddr{}, false
	}
	return tcpAddr{ip: ap.Addr().As16(), port: ap.Port()}, true
}

// net returns a as Go's net prints it: an IPv4 (or IPv4-mapped) address as IPv4.
func (a tcpAddr) net() *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(a.ip).Unmap(), a.port))
}

// unixNano is t as a detached deadline.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// deadline is the time of a detached deadline.
func deadline(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (w *wakeConn) SetReadDeadline(t time.Time) error {
	err := w.setReadDeadline(t)
	w.c.wake()
	return err
}

// setReadDeadline sets the read deadline without waking a parked client.
func (w *wakeConn) setReadDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.det; d != nil {
		d.rdl, d.rset = unixNano(t), true
		return nil
	}
	return w.Conn.SetReadDeadline(t)
}

func (w *wakeConn) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.det; d != nil {
		d.wdl, d.wset = unixNano(t), true
		return nil
	}
	return w.Conn.SetWriteDeadline(t)
}

func (w *wakeConn) SetDeadline(t time.Time) error {
	w.mu.Lock()
	var err error
	if d := w.det; d != nil {
		d.rdl, d.rset, d.wdl, d.wset = unixNano(t), true, unixNano(t), true
	} else {
		err = w.Conn.SetDeadline(t)
	}
	w.mu.Unlock()
	w.c.wake()
	return err
}

func (w *wakeConn) Close() error {
	w.c.wake() // before the descriptor goes: it leaves the epoll set while it is valid
	if w.c.lp != nil {
		w.c.lp.ep.Remove()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.det; d != nil {
		d.closed = true // attach closes the connection it makes
		return nil
	}
	return w.Conn.Close()
}

func (w *wakeConn) RemoteAddr() net.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.det; d != nil {
		return d.raddr.net()
	}
	return w.Conn.RemoteAddr()
}

func (w *wakeConn) LocalAddr() net.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.det; d != nil {
		return d.laddr.net()
	}
	return w.Conn.LocalAddr()
}

// detach clears the read deadline (tryPark's, which asked the client to park), closes
// the client's connection and keeps its socket by a duplicate descriptor, which it
// returns. When it cannot (not a TCP socket, no descriptor left), it returns -1 and
// leaves the connection as it was. The client goroutine calls it just before Park.
func (w *wakeConn) detach() int {
	tc, ok := w.Conn.(*net.TCPConn)
	if !ok {
		return -1
	}
	ra, rok := tc.RemoteAddr().(*net.TCPAddr)
	la, lok := tc.LocalAddr().(*net.TCPAddr)
	if !rok || !lok {
		return -1
	}
	raddr, rok := compactAddr(ra)
	laddr, lok := compactAddr(la)
	if !rok || !lok {
		return -1 // an IPv6 zone: kept with the connection
	}
	fd, err := fastio.Dup(tc)
	if err != nil {
		return -1
	}
	d := &detached{fd: int32(fd), raddr: raddr, laddr: laddr}
	w.mu.Lock()
	w.det, w.Conn = d, nil
	_ = tc.Close() // a deadline set meanwhile went with it, as tryPark's clearing would
	w.mu.Unlock()
	w.setIO(nil) // the raw I/O state, the reader and the writer go too
	return fd
}

// asked reports whether a read deadline or a close was asked for while detached.
func (w *wakeConn) asked() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.det != nil && (w.det.rset || w.det.closed)
}

// attach gives a detached client a connection over its socket again, with the deadlines
// set and the close asked for while it was parked; the goroutine that resumes the client
// calls it first. If no connection can be made (no descriptor left), the client's reads
// and writes fail, and it leaves.
func (w *wakeConn) attach() {
	w.mu.Lock()
	d := w.det
	if d == nil {
		w.mu.Unlock()
		return
	}
	w.det = nil
	conn, err := fastio.FileConn(int(d.fd))
	if err != nil {
		conn = &lostConn{err: err, raddr: d.raddr, laddr: d.laddr}
	}
	w.Conn = conn
	if d.rset {
		_ = conn.SetReadDeadline(deadline(d.rdl))
	}
	if d.wset {
		_ = conn.SetWriteDeadline(deadline(d.wdl))
	}
	if d.closed {
		_ = conn.Close()
	}
	w.mu.Unlock()
	rw := fastio.New(conn)
	w.setIO(rw) // outside mu: the lock order is Conn.WMu, then mu
	if lp := w.c.lp; lp != nil {
		// On the event loops: the new descriptor joins a loop when the client next waits
		// (waitClient), and its reads are watched again; what it last read is unknown.
		lp.fd = parkable(conn)
		fastio.Watch(rw, w.c)
		lp.ep.MarkUnknown()
	}
}

// setIO gives the client a new reader, frame reader and writer over rw, or with rw nil
// takes them away: a detached client holds none. The old ones hold nothing (the client is
// idle: tryPark checked). Only the client goroutine reads; the writer is changed under
// Conn.WMu.
func (w *wakeConn) setIO(rw io.ReadWriter) {
	cc := &w.c.Conn
	var r *fastio.Reader
	var fr *protocol.FrameReader
	var wr *fastio.Writer
	if rw != nil {
		r, wr = fastio.NewReader(rw), fastio.NewWriter(rw)
		fr = protocol.NewFrameReader(r, cc.MaxPacket)
	}
	cc.WMu.Lock()
	cc.R, cc.FR, cc.W = r, fr, wr
	cc.WMu.Unlock()
}

// lostConn is a detached client's connection that could not be made again: every read
// and write fails.
type lostConn struct {
	err          error
	raddr, laddr tcpAddr
}

func (l *lostConn) Read([]byte) (int, error)         { return 0, l.err }
func (l *lostConn) Write([]byte) (int, error)        { return 0, l.err }
func (l *lostConn) Close() error                     { return nil }
func (l *lostConn) LocalAddr() net.Addr              { return l.laddr.net() }
func (l *lostConn) RemoteAddr() net.Addr             { return l.raddr.net() }
func (l *lostConn) SetDeadline(time.Time) error      { return nil }
func (l *lostConn) SetReadDeadline(time.Time) error  { return nil }
func (l *lostConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*lostConn)(nil)
