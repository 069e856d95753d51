package lease

// leaseState is where a lease is in its life. It is guarded by clientSession.mu: every
// change goes through lease.to, under mu. While a lease is unrelayed or parked nothing
// but the client goroutine changes it, so that goroutine may read it then without mu.
//
//	acquiring ─► unrelayed ─► relaying ─► ending ─┬─► returning ─► released
//	                 ▲          │   ▲             └─► syncing ───► returning
//	       a request │          ▼   │ ensureRelay     (settings read back)
//	                 └──────── parked
//
//	acquiring ─► relaying                 the new lease of a replay on the primary
//	relaying ─► syncing ─┬─► relaying     a retry after a stale cached plan
//	                     └─► released     a replica's 25006 replayed on the primary
//	relaying ─► returning                 a transaction block refused in statement mode
//	relaying, ending ─► stopping ─► returning
//	                                      the client left with nothing outstanding
//	unrelayed, parked, relaying, ending, stopping ─► abandoned ─► destroyed
//	                                      the client left mid-request, or cannot be written to
//	any state but released ─► destroyed   the server failed, or something panicked
//
// giveBack is the only way to released or destroyed, the two final states. leaseMoves is
// this diagram as a table.
type leaseState uint8

const (
	// leaseAcquiring: made for the next request; no server yet.
	leaseAcquiring leaseState = iota
	// leaseUnrelayed: the client's server; requests go out and nothing reads the
	// replies yet (clientSession.unrelayed is this lease).
	leaseUnrelayed
	// leaseParked: unrelayed, idle in a transaction with nothing outstanding: the server
	// owes no reply, so the client may be read without a relay.
	leaseParked
	// leaseRelaying: a relay copies the server's replies to the client, on the client
	// goroutine (inline) or on a relay goroutine.
	leaseRelaying
	// leaseSyncing: the relay runs an exchange of cmpool's own on the server (reading
	// settings back, a retry, a replay on the primary); the client goroutine waits.
	leaseSyncing
	// leaseEnding: the relay flushes the reply that ends the lease; the client
	// goroutine waits.
	leaseEnding
	// leaseStopping: the client left with the lease clean; its relay is stopped and the
	// client goroutine gives the server back.
	leaseStopping
	// leaseAbandoned: the client left mid-request, or cannot be written to: the
	// server, in an unknown state, is destroyed.
	leaseAbandoned
	// leaseReturning: no longer the client's; the server is cleaned (reset, temporary
	// objects) before it goes back.
	leaseReturning
	// leaseReleased: over; the server is back in its pool.
	leaseReleased
	// leaseDestroyed: over; the server is closed.
	leaseDestroyed
)

var leaseStateNames = [...]string{
	leaseAcquiring: "acquiring",
	leaseUnrelayed: "unrelayed",
	leaseParked:    "parked",
	leaseRelaying:  "relaying",
	leaseSyncing:   "syncing",
	leaseEnding:    "ending",
	leaseStopping:  "stopping",
	leaseAbandoned: "abandoned",
	leaseReturning: "returning",
	leaseReleased:  "released",
	leaseDestroyed: "destroyed",
}

func (s leaseState) String() string {
	if int(s) < len(leaseStateNames) {
		return leaseStateNames[s]
	}
	return "invalid"
}

// leaseMoves lists, for each state, the states a lease may go to from it.
var leaseMoves = func() (m [len(leaseStateNames)]uint16) {
	allow := func(from leaseState, to ...leaseState) {
		for _, t := range to {
			m[from] |= 1 << t
		}
	}
	allow(leaseAcquiring, leaseUnrelayed, leaseRelaying)
	allow(leaseUnrelayed, leaseRelaying, leaseAbandoned)
	allow(leaseParked, leaseUnrelayed, leaseRelaying, leaseAbandoned)
	allow(leaseRelaying, leaseParked, leaseSyncing, leaseEnding, leaseStopping, leaseAbandoned, leaseReturning)
	allow(leaseSyncing, leaseRelaying, leaseReturning, leaseReleased)
	allow(leaseEnding, leaseSyncing, leaseReturning, leaseStopping, leaseAbandoned)
	allow(leaseStopping, leaseReturning, leaseAbandoned)
	allow(leaseReturning, leaseReleased)
	for s := leaseAcquiring; s < leaseReleased; s++ {
		allow(s, leaseDestroyed)
	}
	return m
}()

// to moves l to state next. The caller holds clientSession.mu. A move the diagram on
// leaseState does not allow is a bug in cmpool, and panics.
func (l *Lease) to(next leaseState) {
	if leaseMoves[l.state]&(1<<next) == 0 {
		panic("bug: lease " + l.state.String() + " -> " + next.String())
	}
	l.state = next
}

// open reports whether l takes client requests: the client goroutine may send on it
// (unrelayed, parked or relaying). Otherwise the relay is finishing something of
// cmpool's own on it, or it is over. The caller holds clientSession.mu.
func (l *Lease) open() bool { return l.state >= leaseUnrelayed && l.state <= leaseRelaying }

// over reports whether l's server was given back (released or destroyed).
func (l *Lease) over() bool { return l.state >= leaseReleased }
