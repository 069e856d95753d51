//go:build linux

package park

import (
	"sync"
	"syscall"
)

// Set is an epoll set of parked client sockets; see the package comment. Its methods are
// safe for concurrent use.
type Set struct {
	epfd   int
	wakeR  int // read end of a pipe in the set: a byte on it stops the waiting goroutine
	wakeW  int
	done   chan struct{}
	mu     sync.Mutex
	gen    uint32
	parked map[Token]Sleeper
	closed bool
}

// New returns a Set and starts the goroutine that waits on it; Close stops it.
func New() (*Set, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0]), Pad: 0}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(p[0])
		_ = syscall.Close(p[1])
		return nil, err
	}
	s := &Set{epfd: epfd, wakeR: p[0], wakeW: p[1], done: make(chan struct{}), parked: make(map[Token]Sleeper)}
	go s.wait()
	return s, nil
}

// Park adds the socket fd to the set, to resume sl when it becomes readable or hangs up,
// or when Wake is called with the returned token. The caller's goroutine may then end: sl
// owns the socket until Resume runs. fd must stay open until then (Wake before closing it).
func (s *Set) Park(fd int, sl Sleeper) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.gen++
	if s.gen == 0 {
		s.gen = 1 // 0 is the pipe's
	}
	t := token(int32(fd), s.gen)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd), Pad: int32(s.gen)}
	if err := syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return 0, err
	}
	s.parked[t] = sl
	return t, nil
}

// Wake resumes the client parked under t, if it still is, and reports whether it was.
func (s *Set) Wake(t Token) bool {
	s.mu.Lock()
	sl, ok := s.parked[t]
	if ok {
		delete(s.parked, t)
		_ = syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_DEL, int(int32(t>>32)), nil)
	}
	s.mu.Unlock()
	if ok {
		go sl.Resume()
	}
	return ok
}

// Len is the number of parked clients (0 for a nil Set).
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.parked)
}

// Close stops the waiting goroutine and resumes every client still parked; Park fails
// from then on.
func (s *Set) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	_, _ = syscall.Write(s.wakeW, []byte{0})
	<-s.done
	s.mu.Lock()
	rest := s.parked
	s.parked = nil
	s.mu.Unlock()
	for t, sl := range rest {
		_ = syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_DEL, int(int32(t>>32)), nil)
		go sl.Resume()
	}
	_ = syscall.Close(s.epfd)
	_ = syscall.Close(s.wakeR)
	_ = syscall.Close(s.wakeW)
}

// wait is the goroutine that waits on the set and resumes the clients whose sockets are
// ready.
func (s *Set) wait() {
	defer close(s.done)
	events := make([]syscall.EpollEvent, 128)
	var ready []Sleeper
	for {
		n, err := syscall.EpollWait(s.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		ready = ready[:0]
		s.mu.Lock()
		for _, ev := range events[:n] {
			if ev.Fd == int32(s.wakeR) && ev.Pad == 0 {
				s.mu.Unlock()
				return
			}
			t := token(ev.Fd, uint32(ev.Pad))
			if sl, ok := s.parked[t]; ok {
				delete(s.parked, t)
				// One-shot: the socket is disarmed; it leaves the set so that it can be
				// parked again.
				_ = syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_DEL, int(ev.Fd), nil)
				ready = append(ready, sl)
			}
		}
		s.mu.Unlock()
		for _, sl := range ready {
			go sl.Resume()
		}
	}
}
