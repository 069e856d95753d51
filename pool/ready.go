package pool

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/router"
)

// readyCache remembers the last readiness probe of the primary for a second, so that
// frequent probes cost at most one server login per second. Concurrent callers share the
// probe in flight.
type readyCache struct {
	mu    sync.Mutex  // guards the fields below; never held across the login
	at    time.Time   // when the last probe ended
	err   error       // its result
	probe *readyProbe // the probe in flight, or nil
}

// readyProbe is one login to the primary for Ready; err is set before done is closed.
type readyProbe struct {
	done chan struct{}
	err  error
}

// Ready reports whether the server can take clients: it returns ErrServerClosed once
// Shutdown has begun, or the error of a login to the primary when that fails. For
// readiness probes (cmd/cmpool's /readyz). The login is bounded by
// server_connect_timeout; Ready returns when ctx ends even if the login goes on.
func (s *Server) Ready(ctx context.Context) error {
	if s.closing.Load() || s.noAccept.Load() {
		return ErrServerClosed
	}
	s.readiness.mu.Lock()
	if p := s.readiness.probe; p == nil && time.Since(s.readiness.at) < time.Second {
		err := s.readiness.err
		s.readiness.mu.Unlock()
		return err
	}
	p := s.readiness.probe
	if p == nil {
		p = &readyProbe{done: make(chan struct{})}
		s.readiness.probe = p
		go s.probeReady(p)
	}
	s.readiness.mu.Unlock()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("primary unreachable: %w", ctx.Err())
	}
}

// probeReady logs in to the primary for Ready, and records the outcome.
func (s *Server) probeReady(p *readyProbe) {
	s.mu.Lock()
	cfg := s.primaryCfg.Copy()
	s.mu.Unlock()
	cfg.RuntimeParams["application_name"] = "cmpool readiness"
	ctx, cancel := context.WithTimeout(s.ctx, s.conf().ServerConnectTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		err = conn.Close(ctx)
	}
	if err != nil {
		err = fmt.Errorf("primary unreachable%s: %w", s.readsElsewhere(), err)
	}
	s.readiness.mu.Lock()
	s.readiness.at, s.readiness.err, s.readiness.probe = time.Now(), err, nil
	s.readiness.mu.Unlock()
	p.err = err
	close(p.done)
}

// readsElsewhere says, for Ready's error, where reads go while the primary is
// unreachable: to how many usable replicas, if any are configured.
func (s *Server) readsElsewhere() string {
	rs := s.rs()
	if rs == nil {
		return ""
	}
	replicas := rs.Snapshot()
	usable := 0
	for _, r := range replicas {
		if r.Role == router.RoleReplica && r.State == router.ReplicaOK {
			usable++
		}
	}
	return fmt.Sprintf(" (writes fail; reads go to %d usable replica(s) of %d)", usable, len(replicas))
}
