package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/router"
)

// TestDialContextOnlyEmbedder: a program that embeds cmpool with a replica and connects
// only through DialContext, never calling Serve, gets the replica monitor, and its reads
// go to the replica.
func TestDialContextOnlyEmbedder(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 60*time.Second)
	srv, err := pool.New(integration.WithTestAuth(pool.Config{Primary: c.Primary.URL("", ""), Replicas: c.ReplicaURLs(),
		ReplicaCheckInterval: 100 * time.Millisecond}))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})
	cfg, err := pgx.ParseConfig(c.Primary.URL("", "")) // the address is not dialed
	require.NoError(t, err)
	cfg.DialFunc = srv.DialContext
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(context.Background())

	require.Eventually(t, func() bool {
		st := srv.Stat()
		return len(st.Replicas) == 1 && st.Replicas[0].State == router.ReplicaOK && st.Replicas[0].ReplayLSN != 0
	}, 10*time.Second, 50*time.Millisecond, "the replica is checked: %+v", srv.Stat().Replicas)
	var inRecovery bool
	require.NoError(t, conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.True(t, inRecovery, "a read goes to the replica")
	require.Positive(t, srv.Stat().Replicas[0].Routed)
}
