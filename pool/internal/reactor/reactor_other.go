//go:build !linux

package reactor

import "sync"

// Set is not available here: New fails with ErrUnsupported, and each client keeps a
// goroutine.
type Set struct{ loops []struct{} }

// New fails: the loops need epoll.
func New(n int) (*Set, error) { return nil, ErrUnsupported }

// Add fails.
func (s *Set) Add(ep *Endpoint, fd int) error { return ErrUnsupported }

// Remove does nothing.
func (ep *Endpoint) Remove() {}

// Post runs wt on a new goroutine.
func (ep *Endpoint) Post(wt *Waiter) { go wt.Task.RunReady(nil) }

// Close does nothing.
func (s *Set) Close() {}

type loop struct{ mu sync.Mutex }

func (l *loop) detachLocked(w *Worker) bool { return false }

// Stats is zero.
func (s *Set) Stats() Stats { return Stats{} }
