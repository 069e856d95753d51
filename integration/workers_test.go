package integration_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestBinaryOneWorkerOneLoop: the cmpool binary with workers = 1 and event_loops = 1, the
// shape that costs the least CPU per transaction (docs/benchmarks/analysis.md): one thread
// runs Go code, and the loop keeps it while it waits. 40 clients of three pgx modes share
// 2 servers: every answer must be right, logins must go through while the loop is busy,
// and the waits for a server are taken as claims and handed servers.
func TestBinaryOneWorkerOneLoop(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
	writeConfig(t, cfgPath, c, "workers = 1\nevent_loops = 1\ndefault_pool_size = 2\nquery_wait_timeout = \"60s\"\n")
	p := startBinary(t, cfgPath, freeAddr(t), freeAddr(t))
	require.Contains(t, p.logs.String(), "workers=1")
	require.Contains(t, p.logs.String(), "loops=1")

	setup := connect(t, p.url("postgres", "postgres"), pgx.QueryExecModeSimpleProtocol)
	_, err := setup.Exec(ctx, "drop table if exists oneloop; create table oneloop (client int, n int)")
	require.NoError(t, err)

	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement}
	const clients, rounds = 40, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			// Each client logs in while the others already keep the loop busy.
			url := p.url("postgres", "postgres") + fmt.Sprintf("&application_name=oneloop%d", i)
			cfg, err := pgx.ParseConfig(url)
			if err != nil {
				errs <- err
				return
			}
			cfg.DefaultQueryExecMode = modes[i%len(modes)]
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				errs <- fmt.Errorf("client %d: login: %w", i, err)
				return
			}
			defer conn.Close(context.Background())
			for r := range rounds {
				var app string
				var x int
				if err := conn.QueryRow(ctx, "select current_setting('application_name'), $1::int", i*1000+r).Scan(&app, &x); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				if app != fmt.Sprintf("oneloop%d", i) || x != i*1000+r {
					errs <- fmt.Errorf("client %d round %d: got %q %d", i, r, app, x)
					return
				}
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "insert into oneloop values ($1, $2)", i, r)
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, setup.QueryRow(ctx, "select count(*) from oneloop").Scan(&n))
	require.Equal(t, clients*rounds, n)

	_, body := httpGet(t, "http://"+p.metrics+"/metrics")
	handed := metricValue(t, body, "cmpool_event_loop_server_waits_total", `end="handed"`)
	require.Positive(t, handed, "waits for a server were claims, handed servers")
	t.Logf("server waits handed a server: %.0f; events %.0f", handed, metricValue(t, body, "cmpool_event_loop_events_total"))
}
