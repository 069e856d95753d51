package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// BenchmarkPinnedClient measures what session pinning costs a client, through the proxy
// against real PostgreSQL: a statement on an unpinned client, on a pinned one (which keeps
// its server, so no lease is taken), and a statement that may release session state
// (CLOSE ALL), which on a pinned client has the server checked again (one more round
// trip) and on an unpinned one does not.
//
//	go test -run x -bench PinnedClient ./integration
func BenchmarkPinnedClient(b *testing.B) {
	c := integration.StartCluster(b, integration.Options{})
	p := integration.StartProxy(b, c, pool.Config{DefaultPoolSize: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dial := func(b *testing.B) *pgx.Conn {
		cfg, err := pgx.ParseConfig(p.URL("", ""))
		if err != nil {
			b.Fatal(err)
		}
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	for _, bc := range []struct {
		name   string
		pinned bool
		sql    string
	}{
		{"unpinned/select", false, "select 1"},
		{"pinned/select", true, "select 1"},
		{"unpinned/close_all", false, "close all"},
		{"pinned/close_all", true, "close all"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn := dial(b)
			if bc.pinned {
				if _, err := conn.Exec(ctx, "select pg_advisory_lock(4243)"); err != nil {
					b.Fatal(err)
				}
				defer conn.Exec(ctx, "select pg_advisory_unlock(4243)") //nolint:errcheck
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Exec(ctx, bc.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
