package pool

import (
	"fmt"

	"github.com/cmlite/cmpool/pool/internal/lease"
)

// Session pinning's settings and its per-pool counts (pool/internal/lease/pin.go).

// checkPinning validates max_pinned.
func (c Config) checkPinning() error {
	if c.MaxPinned < 0 {
		return fmt.Errorf("pool: max_pinned %d is negative", c.MaxPinned)
	}
	for name, d := range c.Databases {
		if d.MaxPinned < 0 {
			return fmt.Errorf("pool: database %q: max_pinned %d is negative", name, d.MaxPinned)
		}
	}
	return nil
}

// pinning returns pin_session_state and max_pinned for a database.
func (c *Config) pinning(database string) (on bool, maxPinned int) {
	db := c.Databases[database]
	on = !c.PinSessionStateOff
	if db.PinSessionState != nil {
		on = *db.PinSessionState
	}
	size := c.DefaultPoolSize
	if db.PoolSize > 0 {
		size = db.PoolSize
	}
	maxPinned = max(1, size/2)
	if c.MaxPinned > 0 {
		maxPinned = c.MaxPinned
	}
	if db.MaxPinned > 0 {
		maxPinned = db.MaxPinned
	}
	return on, maxPinned
}

// pinKey names a pool's group of pinned clients.
type pinKey struct{ database, user string }

// pinPolicy returns how session state pins the clients of a pool (database, user). The
// pool's group is made on its first client and kept; a reload changes its max_pinned as
// its next client logs in.
func (s *Server) pinPolicy(database, user string) lease.PinPolicy {
	cfg := s.conf()
	on, maxPinned := cfg.pinning(database)
	if !on {
		return lease.PinPolicy{}
	}
	k := pinKey{database, user}
	g, ok := s.pinGroups.Load(k)
	if !ok {
		g, _ = s.pinGroups.LoadOrStore(k, lease.NewPinGroup(database, user, maxPinned))
	}
	pg := g.(*lease.PinGroup)
	pg.SetMax(maxPinned)
	return lease.PinPolicy{On: true, Group: pg}
}

// pinGroup returns the group of pinned clients of a pool, or nil if it has none.
func (s *Server) pinGroup(database, user string) *lease.PinGroup {
	if g, ok := s.pinGroups.Load(pinKey{database, user}); ok {
		return g.(*lease.PinGroup)
	}
	return nil
}
