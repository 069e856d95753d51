package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestReadySilentPrimary: a primary that accepts connections and never answers. Ready
// with a short context returns when it ends, even while another Ready's probe is in
// flight; the probe itself ends at server_connect_timeout; concurrent calls share it.
func TestReadySilentPrimary(t *testing.T) {
	addr, accepted, _ := silentServer(t)
	srv, err := pool.New(pool.Config{Primary: "postgres://postgres@" + addr + "/postgres?sslmode=disable",
		ServerConnectTimeout: time.Second})
	require.NoError(t, err)

	first := make(chan error, 1)
	go func() { first <- srv.Ready(context.Background()) }()
	require.Eventually(t, func() bool { return accepted.Load() == 1 }, 10*time.Second, 5*time.Millisecond,
		"the probe never connected")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	second := make(chan error, 1)
	go func() { second <- srv.Ready(ctx) }()
	select {
	case err := <-second:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("Ready did not return when its context ended")
	}
	select {
	case err := <-first:
		require.Error(t, err)
		require.Contains(t, err.Error(), "primary unreachable")
	case <-time.After(20 * time.Second):
		t.Fatal("the probe of a primary that never answers never ended")
	}
	require.EqualValues(t, 1, accepted.Load(), "concurrent Ready calls share one probe")
	// The failure is remembered for a while: no new login.
	require.Error(t, srv.Ready(context.Background()))
	require.EqualValues(t, 1, accepted.Load())
}
