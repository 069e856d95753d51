package integration_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// One cluster (primary + one replica) serves every proxy test in this package; each test
// starts its own cmpool in front of it.
var shared struct {
	once sync.Once
	c    *integration.Cluster
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		_ = shared.c.Stop()
	}
	if sec.c != nil {
		_ = sec.c.Stop()
	}
	os.Exit(code)
}

func sharedCluster(t *testing.T) *integration.Cluster {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		shared.c, shared.err = integration.Start(ctx, integration.Options{Replicas: 1})
	})
	if errors.Is(shared.err, integration.ErrPostgresNotFound) && os.Getenv("CI") != "true" {
		t.Skipf("PostgreSQL not installed: %v", shared.err)
	}
	if errors.Is(shared.err, integration.ErrContainerBackendUnavailable) && os.Getenv("CI") != "true" {
		t.Skipf("no Docker engine reachable: %v", shared.err)
	}
	require.NoError(t, shared.err, "start PostgreSQL cluster")
	return shared.c
}

// proxy starts cmpool in front of the shared cluster with cfg (transaction mode, pool
// size 20 unless cfg says otherwise).
func proxy(t *testing.T, cfg pool.Config) (*integration.Cluster, *integration.Proxy) {
	t.Helper()
	c := sharedCluster(t)
	return c, integration.StartProxy(t, c, cfg)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, url string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(ctxT(t, 30*time.Second), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// direct connects to the primary without the proxy.
func direct(t *testing.T, c *integration.Cluster) *pgx.Conn {
	return connect(t, c.Primary.URL("", ""), pgx.QueryExecModeSimpleProtocol)
}

// pipelineOutcomes reads a pipeline's results up to its syncs-th Sync: "" for a
// statement that succeeded, its SQLSTATE for one that failed, "prepared" for a prepared
// statement, "sync" for each Sync.
func pipelineOutcomes(t *testing.T, pl *pgconn.Pipeline, syncs int) []string {
	t.Helper()
	var out []string
	for syncs > 0 {
		res, err := pl.GetResults()
		if err != nil {
			out = append(out, pgCode(err))
			continue
		}
		switch r := res.(type) {
		case nil:
			t.Fatalf("pipeline ended before %d more syncs: %v", syncs, out)
		case *pgconn.ResultReader:
			_, err := r.Close()
			out = append(out, pgCode(err))
		case *pgconn.StatementDescription:
			out = append(out, "prepared")
		case *pgconn.PipelineSync:
			out = append(out, "sync")
			syncs--
		}
	}
	return out
}

// freshDatabase drops and creates database name through admin, a direct connection.
func freshDatabase(t *testing.T, admin *pgx.Conn, name string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	_, err := admin.Exec(ctx, "drop database if exists "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
}

// pauseReplay pauses WAL replay on replica n until the test ends, and returns a connection to
// it (to resume earlier with pg_wal_replay_resume()).
func pauseReplay(t *testing.T, n *integration.Node) *pgx.Conn {
	t.Helper()
	conn := connect(t, n.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := conn.Exec(ctxT(t, 10*time.Second), "select pg_wal_replay_pause()")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "select pg_wal_replay_resume()") })
	return conn
}
