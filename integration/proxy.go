package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cmlite/cmpool/pool"
)

// Proxy is an in-process cmpool serving on a free loopback port.
type Proxy struct {
	Server *pool.Server
	Addr   string
	done   chan error
}

// URL returns a connection URL through the proxy.
func (p *Proxy) URL(database, user string) string {
	if database == "" {
		database = "postgres"
	}
	if user == "" {
		user = "postgres"
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, p.Addr, database)
}

// StartProxy starts cmpool with cfg in front of the cluster: Primary defaults to the
// cluster's primary. Replicas are used only when cfg names them (see ReplicaURLs). The
// proxy is shut down with t.Cleanup.
//
// A cfg that configures no client authentication gets auth_type trust (see WithTestAuth):
// the proxy listens on loopback only, and tests that are not about authentication log in
// as the cluster's trusted superuser without a password. Tests of cmpool's real default
// use StartProxyDefaultAuth.
func StartProxy(t testing.TB, c *Cluster, cfg pool.Config) *Proxy {
	t.Helper()
	return StartProxyDefaultAuth(t, c, WithTestAuth(cfg))
}

// StartProxyDefaultAuth is StartProxy without WithTestAuth: cfg's authentication
// settings are cmpool's, defaults included.
func StartProxyDefaultAuth(t testing.TB, c *Cluster, cfg pool.Config) *Proxy {
	t.Helper()
	if cfg.Primary == "" {
		cfg.Primary = c.Primary.URL("", "")
	}
	p, err := serveProxy(cfg)
	if err != nil {
		t.Fatalf("start cmpool: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("cmpool shutdown: %v", err)
		}
	})
	return p
}

// WithTestAuth returns cfg with AuthType "trust" when it configures no client
// authentication at all (no AuthType, AuthFile, Users, AuthUser or Authenticator), and
// the same for what its LoadConfig returns. This is the one place where the harness
// chooses trust, for proxies on loopback in front of a cluster that trusts its
// superuser; cmpool itself never defaults to trust (see docs/security.md). Reload a proxy
// started by StartProxy with p.Server.Reload(WithTestAuth(next)).
func WithTestAuth(cfg pool.Config) pool.Config {
	if cfg.AuthType == "" && cfg.AuthFile == "" && len(cfg.Users) == 0 && cfg.AuthUser == "" && cfg.Authenticator == nil {
		cfg.AuthType = pool.AuthTrust
	}
	if load := cfg.LoadConfig; load != nil {
		cfg.LoadConfig = func() (pool.Config, error) {
			next, err := load()
			return WithTestAuth(next), err
		}
	}
	return cfg
}

// ServeProxy starts cmpool with WithTestAuth(cfg) on a free loopback port.
func ServeProxy(cfg pool.Config) (*Proxy, error) {
	return serveProxy(WithTestAuth(cfg))
}

func serveProxy(cfg pool.Config) (*Proxy, error) {
	if v := os.Getenv("CMPOOL_TEST_EVENT_LOOPS"); v != "" && cfg.EventLoops == 0 {
		// The whole suite can run on event loops: CMPOOL_TEST_EVENT_LOOPS=2 go test ./integration/
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("CMPOOL_TEST_EVENT_LOOPS: %w", err)
		}
		cfg.EventLoops = n
	}
	srv, err := pool.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Server: srv, Addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(ln) }()
	return p, nil
}

// Close shuts the proxy down, waiting for clients until ctx ends.
func (p *Proxy) Close(ctx context.Context) error {
	err := p.Server.Shutdown(ctx)
	if serr := <-p.done; !errors.Is(serr, pool.ErrServerClosed) {
		return serr
	}
	return err
}

// ReplicaURLs returns the URLs of the cluster's replicas, for pool.Config.Replicas.
func (c *Cluster) ReplicaURLs() []string {
	urls := make([]string, 0, len(c.Replicas))
	for _, r := range c.Replicas {
		urls = append(urls, r.URL("", ""))
	}
	return urls
}
