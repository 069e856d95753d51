// Package park holds idle client connections without a goroutine each.
//
// A pooler's clients are idle most of the time, and a goroutine blocked in a read costs its
// stack (4 KiB or more) for as long as the client is connected. A Set is one epoll set over
// the sockets of parked clients and one goroutine waiting on it: a parked client is its
// socket in the set and the small struct that resumes it. When the socket becomes readable
// (a request, or the client hanging up), or when something else needs the client (Wake),
// the Set removes it and runs its Resume on a new goroutine, which carries on reading the
// socket as before.
//
// The set is level-triggered and one-shot: data that arrived before Park is reported at
// once, and a socket is reported once per Park.
package park

import "errors"

// Sleeper is a parked client: Resume runs, on a goroutine of its own, when it is woken.
type Sleeper interface {
	Resume()
}

// Token names one Park of one socket; a stale token (of an earlier Park, or of a socket
// since closed and its descriptor reused) wakes nothing.
type Token uint64

// ErrUnsupported is returned by New where there is no epoll (everywhere but Linux).
var ErrUnsupported = errors.New("park: not supported on this platform")

// ErrClosed is returned by Park once the Set is closed.
var ErrClosed = errors.New("park: set closed")

func token(fd int32, gen uint32) Token { return Token(uint64(uint32(fd))<<32 | uint64(gen)) }
