package pool

import (
	"context"
	"maps"
	"time"

	"github.com/cmlite/cmpool/pool/internal/lease"
)

// PAUSE, RESUME and KILL: databases whose new transactions wait.
//
// pauseState is an immutable snapshot, replaced on every change; changed is closed when
// it is replaced, which wakes the clients waiting on it.
type pauseState struct {
	all     bool            // PAUSE with no database
	dbs     map[string]bool // paused (or killed) databases
	killed  map[string]bool // KILLed databases, a subset of dbs: their logins wait too
	changed chan struct{}
}

// holdsLogins reports whether logins to database wait, even those that could be done
// without a server: after KILL.
func (p *pauseState) holdsLogins(database string) bool {
	return p != nil && p.killed[database]
}

func (p *pauseState) covers(database string) bool {
	return p != nil && (p.all || p.dbs[database])
}

// setPause pauses database ("" for every database), or resumes it when paused is false.
// kill (with paused and a database) makes its logins wait too. It reports whether
// anything changed.
func (s *Server) setPause(database string, paused, kill bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.pauses.Load()
	next := &pauseState{dbs: make(map[string]bool), killed: make(map[string]bool), changed: make(chan struct{})}
	if old != nil {
		next.all = old.all
		maps.Copy(next.dbs, old.dbs)
		maps.Copy(next.killed, old.killed)
	}
	switch {
	case database == "" && paused:
		next.all = true
	case database == "":
		next.all = false
		clear(next.dbs)
		clear(next.killed)
	case paused:
		next.dbs[database] = true
		if kill {
			next.killed[database] = true
		}
	default:
		delete(next.dbs, database)
		delete(next.killed, database)
	}
	if old.covers(database) == next.covers(database) && old.holdsLogins(database) == next.holdsLogins(database) &&
		(database != "" || paused || old == nil) {
		return false
	}
	if !next.all && len(next.dbs) == 0 {
		s.pauses.Store(nil)
	} else {
		s.pauses.Store(next)
	}
	if old != nil {
		close(old.changed)
	}
	return true
}

// setDisabled is the console's DISABLE (disabled) and ENABLE: new logins to database are
// refused while it is disabled; connected clients stay.
func (s *Server) setDisabled(database string, disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(s.disabledDBs())
	if next == nil {
		next = make(map[string]bool)
	}
	if disabled {
		next[database] = true
	} else {
		delete(next, database)
	}
	s.disabled.Store(&next)
}

// disabledDBs returns the databases DISABLE holds; the map is not to be changed.
func (s *Server) disabledDBs() map[string]bool {
	if m := s.disabled.Load(); m != nil {
		return *m
	}
	return nil
}

// waitClose is the console's WAIT_CLOSE: it returns once no server connection of database
// ("" for all) is waiting to be closed (SHOW SERVERS' close_needed): none of a pool that a
// reload or a promotion replaced, none made before a RECONNECT. It returns early when ctx
// ends.
func (s *Server) waitClose(ctx context.Context, database string) error {
	return pollUntil(ctx, func() bool { return !s.closeNeeded(database) })
}

// pollInterval is how often the console's PAUSE and WAIT_CLOSE look again at what they
// wait for.
const pollInterval = 10 * time.Millisecond

// pollUntil returns once done reports true, looking every pollInterval, or ctx's error
// when ctx ends first.
func pollUntil(ctx context.Context, done func() bool) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// closeNeeded reports whether a server connection of database ("" for all) is still to be
// closed; see waitClose.
func (s *Server) closeNeeded(database string) bool {
	needed := false
	s.closingPools.Range(func(k, _ any) bool {
		if bp := k.(*backendPool); database == "" || bp.key.database == database {
			needed = true
		}
		return !needed
	})
	for _, bp := range s.poolsOf(database) {
		for sc := range bp.Conns() {
			if needed = needed || bp.CloseNeeded(sc); needed {
				break
			}
		}
	}
	return needed
}

// welcomeKey is the database and user of a login.
type welcomeKey struct{ database, user string }

// noteWelcome keeps the parameters a server reported at a login of k, unless the same are
// kept already.
func (s *Server) noteWelcome(k welcomeKey, params map[string]string) {
	if old, ok := s.welcomes.Load(k); ok && maps.Equal(old.(map[string]string), params) {
		return
	}
	s.welcomes.Store(k, maps.Clone(params))
}

// waitUnpaused blocks while the client's database is paused, until ctx ends. The client
// counts as waiting meanwhile.
func (c *clientSession) waitUnpaused(ctx context.Context) error {
	p := c.srv.pauses.Load()
	if !p.covers(c.Database) {
		return nil
	}
	c.waitingSince.Store(lease.Nanotime())
	defer c.waitingSince.Store(0)
	for p.covers(c.Database) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.changed:
		}
		p = c.srv.pauses.Load()
	}
	return nil
}

// clientsOf returns the clients of database, or every client for "".
func (s *Server) clientsOf(database string) []*clientSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*clientSession, 0, len(s.conns))
	for c := range s.conns {
		// c.Database is read only once startup, which writes it, is over.
		if database == "" || c.loggedIn.Load() && c.Database == database {
			out = append(out, c)
		}
	}
	return out
}

// pause is the console's PAUSE: new transactions of database ("" for all) wait, and
// pause returns once every server connection of it is back in its pool, after closing
// them. It returns early, leaving the pause in place, when ctx ends.
func (s *Server) pause(ctx context.Context, database string) error {
	s.setPause(database, true, false)
	err := pollUntil(ctx, func() bool {
		for _, bp := range s.poolsOf(database) {
			if bp.Stat().Acquired > 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, bp := range s.poolsOf(database) {
		bp.DestroyIdle()
	}
	return nil
}

// kill is the console's KILL: database is paused, and its clients and server
// connections are closed at once.
func (s *Server) kill(database string) {
	s.setPause(database, true, true)
	for _, c := range s.clientsOf(database) {
		if c.admin {
			continue
		}
		c.Log.Info("client killed by the admin console")
		_ = c.Conn.Net.Close()
	}
	for _, bp := range s.poolsOf(database) {
		bp.DestroyIdle()
	}
}

// reconnect is the console's RECONNECT: every server connection of database ("" for
// all) is closed once it is back in its pool, idle ones at once.
func (s *Server) reconnect(database string) {
	now := time.Now()
	for _, bp := range s.poolsOf(database) {
		bp.Reconnect(now)
	}
}
