//go:build linux

package main

import (
	"context"
	"net"
	"runtime"
	"syscall"
	"unsafe"
)

// waitMS bounds one wait of the loop, so that it sees ctx end.
const waitMS = 10

// sys is the loop's system calls: through the runtime, or raw.
type sys struct{ raw bool }

func (s sys) read(fd int, b []byte) (int, syscall.Errno) {
	if !s.raw {
		n, err := syscall.Read(fd, b)
		return n, errno(err)
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func (s sys) write(fd int, b []byte) (int, syscall.Errno) {
	if !s.raw {
		n, err := syscall.Write(fd, b)
		return n, errno(err)
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// wait returns the ready events, or 0 after waitMS or a signal.
func (s sys) wait(epfd int, evs []syscall.EpollEvent) int {
	if !s.raw {
		n, _ := syscall.EpollWait(epfd, evs, waitMS)
		return max(n, 0)
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), waitMS, 0, 0)
	if e != 0 || n == 0 {
		// A signal (the runtime's preemption, for a stop-the-world) or the time bound:
		// let the runtime have the processor.
		runtime.Gosched()
		return 0
	}
	return int(n)
}

func errno(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return 0
}

// rawFD takes ln's socket out of the runtime's poller: a duplicate, non-blocking.
func rawFD(ln net.Listener) (int, error) {
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return -1, err
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return -1, err
	}
	syscall.CloseOnExec(fd)
	return fd, syscall.SetNonblock(fd, true)
}

func relayLoop(ctx context.Context, ln net.Listener, target string, raw bool) error {
	taddr, err := net.ResolveTCPAddr("tcp4", target)
	if err != nil {
		ln.Close()
		return err
	}
	tsa := &syscall.SockaddrInet4{Port: taddr.Port}
	copy(tsa.Addr[:], taddr.IP.To4())
	lfd, err := rawFD(ln)
	if err != nil {
		return err
	}
	defer syscall.Close(lfd)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer syscall.Close(epfd)
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, lfd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return err
	}
	s := sys{raw: raw}
	conns := map[int]*conn{}
	defer func() {
		for fd := range conns {
			syscall.Close(fd)
		}
	}()
	buf := make([]byte, 64<<10)
	evs := make([]syscall.EpollEvent, 128)
	for ctx.Err() == nil {
		n := s.wait(epfd, evs)
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				accept(epfd, lfd, tsa, conns)
				continue
			}
			c := conns[fd]
			if c == nil {
				continue // closed by an earlier event of this batch
			}
			if ev.Events&syscall.EPOLLOUT != 0 && len(c.pend) > 0 {
				if !c.flush(s, epfd, nil) {
					c.drop(conns)
					continue
				}
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR) == 0 || len(c.peer.pend) > 0 {
				continue
			}
			m, e := s.read(fd, buf)
			if e == syscall.EAGAIN {
				continue
			}
			if m <= 0 || e != 0 || !c.peer.flush(s, epfd, buf[:m]) {
				c.drop(conns)
			}
		}
	}
	return ctx.Err()
}

// conn is one socket of a client and server pair: pend holds what was read from its peer
// and is still to be written to it. While pend is not empty, the socket waits to be
// writable and its peer is not read.
type conn struct {
	fd   int
	peer *conn
	pend []byte
}

// partialWrites counts the writes that left bytes for later (for the test).
var partialWrites int

// flush writes c.pend and then b to c. What the socket does not take is kept in c.pend,
// and c's socket then waits to be writable, its peer not to be read, until it is written.
// It reports false when the socket failed.
func (c *conn) flush(s sys, epfd int, b []byte) bool {
	had := len(c.pend) > 0
	out := b // b is the loop's buffer: copied only when the socket does not take it all
	if had {
		out = append(c.pend, b...)
	}
	for len(out) > 0 {
		w, e := s.write(c.fd, out)
		if e == syscall.EAGAIN {
			break
		}
		if e != 0 {
			return false
		}
		out = out[w:]
	}
	switch {
	case len(out) == 0:
		c.pend = nil
	case had:
		c.pend = out
	default:
		c.pend = append([]byte(nil), out...)
		partialWrites++
	}
	if had != (len(c.pend) > 0) {
		c.watch(epfd)
		c.peer.watch(epfd)
	}
	return true
}

// watch sets what c's socket waits for: to be writable while it has bytes pending, to be
// read while its peer has none.
func (c *conn) watch(epfd int) {
	var events uint32
	if len(c.pend) > 0 {
		events |= syscall.EPOLLOUT
	}
	if len(c.peer.pend) == 0 {
		events |= syscall.EPOLLIN
	}
	_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_MOD, c.fd, &syscall.EpollEvent{Events: events, Fd: int32(c.fd)})
}

// drop closes both sockets of c's pair (closing takes them out of the epoll set).
func (c *conn) drop(conns map[int]*conn) {
	for _, x := range []*conn{c, c.peer} {
		delete(conns, x.fd)
		syscall.Close(x.fd)
	}
}

// accept takes every pending client, connects it to the target and adds both sockets to
// the epoll set. The connect blocks: the loop is a measurement, not a server.
func accept(epfd, lfd int, tsa *syscall.SockaddrInet4, conns map[int]*conn) {
	for {
		cfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		sfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err == nil {
			if err = syscall.Connect(sfd, tsa); err != nil {
				syscall.Close(sfd)
			}
		}
		if err != nil {
			syscall.Close(cfd)
			continue
		}
		_ = syscall.SetNonblock(sfd, true)
		for _, fd := range []int{cfd, sfd} {
			_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
			_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
		}
		cc, sc := &conn{fd: cfd}, &conn{fd: sfd}
		cc.peer, sc.peer = sc, cc
		conns[cfd], conns[sfd] = cc, sc
	}
}
