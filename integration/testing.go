package integration

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// startTimeout bounds StartCluster's start of the servers; containerStartTimeout does for the
// container backend, whose first start may pull the image.
const (
	startTimeout          = 90 * time.Second
	containerStartTimeout = 5 * time.Minute
)

// StartCluster starts a cluster for a test and stops it in t.Cleanup. It skips the test when no
// PostgreSQL binaries are found, unless the environment variable CI is "true": in CI a missing
// PostgreSQL fails the test. With the container backend it skips the test when no Docker engine
// is reachable, also except in CI. Any other start error fails the test. A nil opts.Logf logs
// to t.Logf.
func StartCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	timeout := startTimeout
	if backend, _, err := resolveBackend(opts, os.Getenv); err == nil && backend == BackendContainer {
		timeout = containerStartTimeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	c, err := Start(ctx, opts)
	if errors.Is(err, ErrPostgresNotFound) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("integration: PostgreSQL is required in CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	if errors.Is(err, ErrContainerBackendUnavailable) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("integration: a Docker engine is required in CI: %v", err)
		}
		t.Skipf("no Docker engine reachable: %v", err)
	}
	if err != nil {
		t.Fatalf("integration: start cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("integration: stop cluster: %v", err)
		}
	})
	return c
}

// LocalBackendOnly skips the test when c runs on the container backend, saying why: what the
// test needs that only local server processes give, such as their pids (for signals), the data
// directory, or clients that the server sees coming from 127.0.0.1.
func LocalBackendOnly(t testing.TB, c *Cluster, why string) {
	t.Helper()
	if c.Backend() == BackendContainer {
		t.Skipf("local backend only: %s", why)
	}
}
