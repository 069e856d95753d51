package servicetest_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/cmlite/cmpool/docs/examples/servicetest"
	"github.com/cmlite/cmpool/pool"
)

// startPostgres runs PostgreSQL in a container for the test and returns its URL. The image is
// $POSTGRES_IMAGE, else the official postgres:16-alpine; any image that follows the official
// one's contract (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) does. The port is published
// on loopback only, and reached there: the Docker engine runs on this machine.
func startPostgres(t *testing.T) string {
	t.Helper()
	if os.Getenv("CI") != "true" { // in CI, a missing Docker engine fails the test
		testcontainers.SkipIfProviderIsNotHealthy(t)
	}
	image := os.Getenv("POSTGRES_IMAGE")
	if image == "" {
		image = "postgres:16-alpine"
	}
	ctr, err := testcontainers.Run(t.Context(), image,
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "app-secret", "POSTGRES_DB": "shop",
		}),
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{network.MustParsePort("5432/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1")}}}
		}),
		// The entrypoint's temporary server says it once, the real one again.
		testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").
			WithOccurrence(2).WithStartupTimeout(2*time.Minute)),
	)
	testcontainers.CleanupContainer(t, ctr)
	if err != nil && os.Getenv("CI") != "true" {
		// For example no registry to pull the image from: set $POSTGRES_IMAGE to a local one.
		t.Skipf("no PostgreSQL container: %v", err)
	}
	require.NoError(t, err)
	port, err := ctr.MappedPort(t.Context(), "5432/tcp")
	require.NoError(t, err)
	return "postgres://app:app-secret@" + net.JoinHostPort("127.0.0.1", port.Port()) + "/shop?sslmode=disable"
}

// startCmpool serves cmpool in-process on a loopback port in front of primary, and returns
// the URL the service uses instead of the database's.
func startCmpool(t *testing.T, primary string) string {
	t.Helper()
	srv, err := pool.New(pool.Config{
		Primary:         primary,
		DefaultPoolSize: 4, // fewer servers than the service's 20 clients: they take turns
		Logger:          slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.ErrorIs(t, <-served, pool.ErrServerClosed)
	})
	// With no auth settings, cmpool checks the password it holds for the user: here the
	// primary URL's, with SCRAM-SHA-256.
	return "postgres://app:app-secret@" + ln.Addr().String() + "/shop?sslmode=disable"
}

func TestOrdersThroughCmpool(t *testing.T) {
	ctx := t.Context()
	db, err := pgxpool.New(ctx, startCmpool(t, startPostgres(t))+"&pool_max_conns=20")
	require.NoError(t, err)
	t.Cleanup(db.Close)
	orders := servicetest.NewOrders(db)
	require.NoError(t, orders.Migrate(ctx))
	require.NoError(t, orders.Restock(ctx, "tea", 100))

	// 20 clients order 6 teas each, through 4 server connections: 16 orders fit in the
	// stock, the 4 others fail on the check constraint and change nothing.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := orders.Place(ctx, "tea", 6)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	placed := 0
	for err := range errs {
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			placed++
		case errors.As(err, &pgErr) && pgErr.Code == "23514":
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 16, placed)
	left, err := orders.Stock(ctx, "tea")
	require.NoError(t, err)
	require.Equal(t, 4, left)
}
