package integration_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
)

// dial opens a pgx connection to n, closed when the test ends.
func dial(t *testing.T, n *integration.Node) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), n.URL("", ""))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func inRecovery(t *testing.T, conn *pgx.Conn) bool {
	t.Helper()
	var recovering bool
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT pg_is_in_recovery()").Scan(&recovering))
	return recovering
}

func TestClusterReplicates(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	require.Len(t, c.Replicas, 1)
	require.Equal(t, integration.RolePrimary, c.Primary.Role)
	require.Equal(t, integration.RoleReplica, c.Replicas[0].Role)

	primary := dial(t, c.Primary)
	replica := dial(t, c.Replicas[0])
	require.False(t, inRecovery(t, primary))
	require.True(t, inRecovery(t, replica))

	_, err := primary.Exec(t.Context(), "CREATE TABLE items (id int PRIMARY KEY, name text)")
	require.NoError(t, err)
	_, err = primary.Exec(t.Context(), "INSERT INTO items VALUES (1, 'one')")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(t.Context()))

	var name string
	require.NoError(t, replica.QueryRow(t.Context(), "SELECT name FROM items WHERE id = 1").Scan(&name))
	require.Equal(t, "one", name)

	_, err = replica.Exec(t.Context(), "INSERT INTO items VALUES (2, 'two')")
	require.ErrorContains(t, err, "read-only transaction")
}

func TestClusterManyReplicas(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{Replicas: 5})
	_, err := dial(t, c.Primary).Exec(t.Context(), "CREATE TABLE items AS SELECT 42 AS id")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(t.Context()))
	ports := map[int]bool{c.Primary.Port: true}
	for _, r := range c.Replicas {
		ports[r.Port] = true
		var id int
		require.NoError(t, dial(t, r).QueryRow(t.Context(), "SELECT id FROM items").Scan(&id), r.Name)
		require.Equal(t, 42, id)
	}
	require.Len(t, ports, 6, "every node has its own port")
}

func TestClusterStopStartNode(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	replica := c.Replicas[0]
	_, err := dial(t, c.Primary).Exec(t.Context(), "CREATE TABLE items (id int)")
	require.NoError(t, err)

	t.Run("replica", func(t *testing.T) {
		require.NoError(t, c.StopNode(replica))
		require.NoError(t, c.StopNode(replica), "stopping a stopped node does nothing")
		_, err := pgx.Connect(t.Context(), replica.URL("", ""))
		require.Error(t, err)
		require.NoError(t, c.WaitReplication(t.Context()), "stopped replicas are skipped")

		_, err = dial(t, c.Primary).Exec(t.Context(), "INSERT INTO items VALUES (1)")
		require.NoError(t, err)
		require.NoError(t, c.StartNode(t.Context(), replica))
		require.NoError(t, c.WaitReplication(t.Context()))
		var n int
		require.NoError(t, dial(t, replica).QueryRow(t.Context(), "SELECT count(*) FROM items").Scan(&n))
		require.Equal(t, 1, n)
	})

	t.Run("primary", func(t *testing.T) {
		require.NoError(t, c.StopNode(c.Primary))
		_, err := pgx.Connect(t.Context(), c.Primary.URL("", ""))
		require.Error(t, err)
		require.Error(t, c.WaitReplication(t.Context()), "needs a running primary")

		require.NoError(t, c.StartNode(t.Context(), c.Primary))
		_, err = dial(t, c.Primary).Exec(t.Context(), "INSERT INTO items VALUES (2)")
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		require.NoError(t, c.WaitReplication(ctx), "the replica reconnects to the restarted primary")
		var n int
		require.NoError(t, dial(t, replica).QueryRow(t.Context(), "SELECT count(*) FROM items").Scan(&n))
		require.Equal(t, 2, n)
	})
}

func TestClusterPromote(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{Replicas: 1})
	replica := c.Replicas[0]
	_, err := dial(t, c.Primary).Exec(t.Context(), "CREATE TABLE items (id int); INSERT INTO items VALUES (1)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(t.Context()))

	require.Error(t, c.Promote(t.Context(), c.Primary), "only a replica can be promoted")
	require.NoError(t, c.StopNode(c.Primary))
	require.NoError(t, c.Promote(t.Context(), replica))
	require.Equal(t, integration.RolePrimary, replica.Role)

	conn := dial(t, replica)
	require.False(t, inRecovery(t, conn))
	_, err = conn.Exec(t.Context(), "INSERT INTO items VALUES (2)")
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM items").Scan(&n))
	require.Equal(t, 2, n)
}

func TestClusterSettingsAndHBA(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{
		BaseDir:  os.TempDir(), // on disk, unlike the default /dev/shm where it has room
		Settings: map[string]string{"application_name": "it's set", "max_connections": "50"},
		HBA:      []string{"host all nobody 127.0.0.1/32 reject"},
	})
	require.Empty(t, c.Replicas)
	if c.Backend() == integration.BackendLocal { // containers keep their data inside
		require.True(t, strings.HasPrefix(c.Primary.DataDir, os.TempDir()), c.Primary.DataDir)
	}
	conn := dial(t, c.Primary)
	var maxConns, appName string
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT current_setting('max_connections'), current_setting('application_name')").Scan(&maxConns, &appName))
	require.Equal(t, "50", maxConns)

	_, err := pgx.Connect(t.Context(), c.Primary.URL("", "nobody"))
	require.ErrorContains(t, err, "pg_hba.conf rejects connection")
	require.NoError(t, c.WaitReplication(t.Context()), "nothing to wait for without replicas")
}

func TestNodeURL(t *testing.T) {
	n := &integration.Node{Host: "127.0.0.1", Port: 5433}
	require.Equal(t, "127.0.0.1:5433", n.Addr())
	require.Equal(t, "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable", n.URL("", ""))
	require.Equal(t, "postgres://app@127.0.0.1:5433/shop?sslmode=disable", n.URL("shop", "app"))
}

func TestStartErrors(t *testing.T) {
	_, err := integration.Start(t.Context(), integration.Options{Backend: integration.BackendLocal, PGBin: t.TempDir()})
	require.ErrorIs(t, err, integration.ErrPostgresNotFound)

	_, err = integration.Start(t.Context(), integration.Options{Backend: "cloud"})
	require.ErrorContains(t, err, `unknown Options.Backend "cloud"`)
}

func TestStartFailureCleansUp(t *testing.T) {
	t.Parallel()
	parent, err := os.MkdirTemp("", "cmpool-it-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	require.NoError(t, os.Chmod(parent, 0o755)) // reachable by the postgres OS user when root

	_, err = integration.Start(t.Context(), integration.Options{
		BaseDir:  parent,
		Settings: map[string]string{"shared_buffers": "plenty"},
	})
	if errors.Is(err, integration.ErrPostgresNotFound) {
		t.Skip(err)
	}
	t.Log(err)
	require.ErrorContains(t, err, `invalid value for parameter "shared_buffers"`, "the error carries the server log")
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Empty(t, entries, "a failed start removes its files")
}

// TestClusterPauseNode: a paused node keeps its connections but answers nothing on them until
// it is resumed; then what was asked meanwhile is answered. On both backends.
func TestClusterPauseNode(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{})
	waiting := dial(t, c.Primary)
	probe := dial(t, c.Primary)
	require.NoError(t, c.PauseNode(c.Primary))
	require.NoError(t, c.PauseNode(c.Primary), "pausing a paused node does nothing")

	answered := make(chan error, 1)
	go func() {
		var n int
		err := waiting.QueryRow(t.Context(), "SELECT 42").Scan(&n)
		if err == nil && n != 42 {
			err = fmt.Errorf("got %d", n)
		}
		answered <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := probe.Exec(ctx, "SELECT 1")
	require.Error(t, err, "a paused server answers nothing")
	select {
	case err := <-answered:
		t.Fatalf("a query was answered while the server was paused: %v", err)
	default:
	}

	require.NoError(t, c.ResumeNode(c.Primary))
	require.NoError(t, <-answered, "the query asked during the pause is answered after it")
	var one int
	require.NoError(t, dial(t, c.Primary).QueryRow(t.Context(), "SELECT 1").Scan(&one))

	require.NoError(t, c.PauseNode(c.Primary))
	require.NoError(t, c.StopNode(c.Primary), "a paused node can be stopped")
	require.NoError(t, c.StartNode(t.Context(), c.Primary))
	require.NoError(t, c.PauseNode(c.Primary))
	// Stop, at the end of the test, resumes it first.

	if c.Backend() == integration.BackendLocal {
		require.ErrorIs(t, c.DisconnectNode(c.Primary), integration.ErrContainerBackendOnly)
	}
}
