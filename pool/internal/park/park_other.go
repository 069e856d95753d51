//go:build !linux

package park

// Set is not available here: New fails with ErrUnsupported, and clients keep their
// goroutines.
type Set struct{}

// New fails: parking needs epoll.
func New() (*Set, error) { return nil, ErrUnsupported }

// Park fails.
func (s *Set) Park(fd int, sl Sleeper) (Token, error) { return 0, ErrUnsupported }

// Wake wakes nothing.
func (s *Set) Wake(t Token) bool { return false }

// Len is 0.
func (s *Set) Len() int { return 0 }

// Close does nothing.
func (s *Set) Close() {}
