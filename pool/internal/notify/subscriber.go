package notify

import (
	"errors"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// MaxQueued is how many notifications may wait for a client that does not read them;
// one more, and the client is disconnected.
const MaxQueued = 10000

// Subscriber is one client's end: the notifications for it, in order, and a goroutine that
// writes them to the client.
type Subscriber struct {
	write    func(msg []byte) error // writes one message to the client and flushes
	overflow func()                 // disconnects a client whose queue is full

	mu       sync.Mutex
	drained  *sync.Cond // on mu: signalled when the queue is written out
	queue    [][]byte
	running  bool // a goroutine writes the queue
	closed   bool
	channels int // the channels it listens on, over every database
}

// NewSubscriber returns the end of a client: write sends it one message (between whole
// messages of anything else it is sent); overflow is called once when it has MaxQueued
// notifications waiting, and should disconnect it.
func NewSubscriber(write func(msg []byte) error, overflow func()) *Subscriber {
	s := &Subscriber{write: write, overflow: overflow}
	s.drained = sync.NewCond(&s.mu)
	return s
}

// Listening reports whether s listens on any channel.
func (s *Subscriber) Listening() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.channels > 0
}

// addChannels counts n more (or fewer) channels s listens on.
func (s *Subscriber) addChannels(n int) {
	s.mu.Lock()
	s.channels += n
	s.mu.Unlock()
}

// waitDrained waits until everything queued for s has been written (or dropped).
func (s *Subscriber) waitDrained() {
	s.mu.Lock()
	for s.running && !s.closed {
		s.drained.Wait()
	}
	s.mu.Unlock()
}

// enqueue queues msg for the client, and starts the writer if it is not running.
func (s *Subscriber) enqueue(msg []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= MaxQueued {
		s.closed, s.queue = true, nil
		s.mu.Unlock()
		s.overflow()
		return
	}
	s.queue = append(s.queue, msg)
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.drain()
	}
}

// drain writes the queue to the client until it is empty.
func (s *Subscriber) drain() {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.closed {
			s.running = false
			s.drained.Broadcast()
			s.mu.Unlock()
			return
		}
		msg := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
		if err := s.write(msg); err != nil {
			s.Close()
		}
	}
}

// Close drops what is queued; nothing more is written.
func (s *Subscriber) Close() {
	s.mu.Lock()
	s.closed, s.queue = true, nil
	s.drained.Broadcast()
	s.mu.Unlock()
}

// quoteIdent quotes a channel name for LISTEN and UNLISTEN.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func asPgError(err error, target **pgconn.PgError) bool { return errors.As(err, target) }
