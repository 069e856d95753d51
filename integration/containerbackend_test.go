package integration_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	_ "github.com/cmlite/cmpool/integration/container" // the container backend's engine
	"github.com/cmlite/cmpool/pool"
)

func TestContainerBackendOptions(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	cases := []struct {
		name         string
		opts         integration.Options
		env          map[string]string
		backend      string
		image, error string
	}{
		{name: "defaults", backend: "local", image: "postgres:16-alpine"},
		{name: "environment picks containers", env: map[string]string{"CMPOOL_TEST_BACKEND": "container"},
			backend: "container", image: "postgres:16-alpine"},
		{name: "environment picks the image", env: map[string]string{"CMPOOL_TEST_BACKEND": " container ", "CMPOOL_TEST_IMAGE": "postgres:17"},
			backend: "container", image: "postgres:17"},
		{name: "options win over the environment", opts: integration.Options{Backend: "local", Image: "my/pg:1"},
			env: map[string]string{"CMPOOL_TEST_BACKEND": "container", "CMPOOL_TEST_IMAGE": "postgres:17"}, backend: "local", image: "my/pg:1"},
		{name: "unknown option", opts: integration.Options{Backend: "docker"}, error: `unknown Options.Backend "docker"`},
		{name: "unknown environment value", env: map[string]string{"CMPOOL_TEST_BACKEND": "podman"}, error: `unknown $CMPOOL_TEST_BACKEND "podman"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend, image, err := integration.ResolveBackend(tc.opts, env(tc.env))
			if tc.error != "" {
				require.ErrorContains(t, err, tc.error)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.backend, backend)
			require.Equal(t, tc.image, image)
		})
	}
}

func TestContainerHBA(t *testing.T) {
	local := integration.HBAConf([]string{"hostssl all app 127.0.0.1/32 cert"}, false, []string{"127.0.0.1/32", "::1/128"})
	lines := strings.Split(strings.TrimSpace(local), "\n")
	require.Equal(t, "hostssl all app 127.0.0.1/32 cert", lines[1], "extra lines come first")
	require.Contains(t, local, "host    replication  all        127.0.0.1/32  trust")
	require.NotContains(t, local, "0.0.0.0/0")

	anyAddr := integration.HBAConf(nil, true, []string{"0.0.0.0/0", "::/0"})
	require.NotContains(t, anyAddr, "127.0.0.1")
	require.Contains(t, anyAddr, "host    replication  all        0.0.0.0/0     trust")
	superuser := strings.Index(anyAddr, "host    all          postgres   0.0.0.0/0     trust")
	scram := strings.Index(anyAddr, "host    all          all        0.0.0.0/0     scram-sha-256")
	trust := strings.Index(anyAddr, "host    all          all        0.0.0.0/0     trust")
	require.True(t, superuser >= 0 && scram > superuser && trust > scram, "superuser trust, then scram, then trust:\n%s", anyAddr)
}

// runScript runs a shell script with PGDATA set and extra directories first on PATH.
func runScript(t *testing.T, script, pgdata string, path ...string) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	cmd := exec.Command(sh, "-c", script)
	cmd.Env = append(os.Environ(), "PGDATA="+pgdata, "PATH="+strings.Join(append(path, os.Getenv("PATH")), ":"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}

func TestContainerInitScript(t *testing.T) {
	script, err := integration.ContainerInitScript(integration.Options{
		Replicas:     2,
		Settings:     map[string]string{"max_connections": "50", "work_mem": "it's 4MB"},
		HBA:          []string{"host all nobody 0.0.0.0/0 reject", "host all bob 127.0.0.1/32 md5", "hostssl  all carol ::1/128  trust", "local all dave 127.0.0.1/32 peer"},
		PasswordAuth: true,
		TLSCert:      []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		TLSKey:       []byte("-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----"),
	})
	require.NoError(t, err)

	pgdata := t.TempDir()
	conf := filepath.Join(pgdata, "postgresql.conf")
	require.NoError(t, os.WriteFile(conf, []byte("# from initdb\nport = 5432\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(pgdata, "pg_hba.conf"), []byte("host all all all md5\n"), 0o600))
	runScript(t, script, pgdata)

	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(pgdata, name))
		require.NoError(t, err)
		return string(data)
	}
	got := read("postgresql.conf")
	require.True(t, strings.HasPrefix(got, "# from initdb\nport = 5432\n"), "the settings are appended")
	for _, want := range []string{
		"listen_addresses = '*'", "wal_level = 'replica'", "max_wal_senders = '10'", "hot_standby = 'on'",
		"max_connections = '50'", "work_mem = 'it''s 4MB'", "ssl = 'on'", "ssl_key_file = 'server.key'",
	} {
		require.Contains(t, got, want+"\n")
	}
	require.True(t, strings.HasSuffix(got, "include_if_exists = 'cmpool_node.conf'\n"), "the per-node file comes last:\n%s", got)
	require.Equal(t, 1, strings.Count(got, "max_connections = '50'"))

	hba := read("pg_hba.conf")
	require.NotContains(t, hba, "host all all all md5", "pg_hba.conf is replaced")
	require.True(t, strings.HasPrefix(hba, "# Written by the cmpool integration harness.\nhost all nobody 0.0.0.0/0 reject\n"+
		"host all bob samenet md5\nhostssl all carol samenet trust\nlocal all dave 127.0.0.1/32 peer\n"),
		"lines for the test's own address name the Docker network, from which its connections come:\n%s", hba)
	require.Contains(t, hba, "host    replication  all        0.0.0.0/0     trust")
	require.Contains(t, hba, "scram-sha-256")

	require.Contains(t, read("cmpool_node.conf"), "cluster_name = 'primary'\n")
	require.Equal(t, "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n", read("server.key"))
	require.Contains(t, read("server.crt"), "AAAA")
	fi, err := os.Stat(filepath.Join(pgdata, "server.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	_, err = integration.ContainerInitScript(integration.Options{HBA: []string{"CMPOOL_HARNESS_EOF"}})
	require.ErrorContains(t, err, "CMPOOL_HARNESS_EOF", "content that would end the here-document early is refused")
}

func TestContainerReplicaEntrypoint(t *testing.T) {
	// Stand-ins for the image's pg_basebackup and docker-entrypoint.sh record their arguments.
	bin := t.TempDir()
	calls := filepath.Join(t.TempDir(), "calls")
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755))
	}
	write("pg_basebackup", `echo "pg_basebackup $*" >> "`+calls+`"
echo 16 > "$PGDATA/PG_VERSION"
echo "cluster_name = 'primary'" > "$PGDATA/cmpool_node.conf"
`)
	write("docker-entrypoint.sh", `echo "docker-entrypoint.sh $*" >> "`+calls+`"`+"\n")
	pgdata := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(pgdata, 0o777))

	script := integration.ContainerReplicaEntrypoint("replica2", "primary", 15432)
	runScript(t, script, pgdata, bin)
	runScript(t, script, pgdata, bin) // a restart: the data directory is there

	got, err := os.ReadFile(calls)
	require.NoError(t, err)
	require.Equal(t, "pg_basebackup -h primary -p 15432 -U postgres -D "+pgdata+" -R -X stream -c fast --no-sync\n"+
		"docker-entrypoint.sh postgres\n"+
		"docker-entrypoint.sh postgres\n", string(got), "one base backup, then the image's entrypoint on every start")
	node, err := os.ReadFile(filepath.Join(pgdata, "cmpool_node.conf"))
	require.NoError(t, err)
	require.Contains(t, string(node), "cluster_name = 'replica2'\n")
	require.NotContains(t, string(node), "primary")
	fi, err := os.Stat(pgdata)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

// testNetwork is a ContainerNetwork that exists only by name.
type testNetwork string

func (n testNetwork) Name() string               { return string(n) }
func (testNetwork) Remove(context.Context) error { return nil }

func (testNetwork) Disconnect(context.Context, string) error      { return nil }
func (testNetwork) Connect(context.Context, string, string) error { return nil }

func TestContainerSpec(t *testing.T) {
	net := testNetwork("cmpool-net")
	primary := &integration.Node{Name: "primary", Role: integration.RolePrimary}
	spec, err := integration.ContainerSpecFor(integration.Options{Replicas: 1}, primary, "", 0, net, "127.0.0.1", 15432)
	require.NoError(t, err)
	require.Equal(t, "postgres:16-alpine", spec.Image)
	require.Equal(t, net, spec.Network)
	require.Equal(t, "primary", spec.Alias, "replicas reach the primary by its name")
	require.Equal(t, "15432/tcp", spec.Port, "the server listens on the host port in the container too")
	require.Equal(t, "15432", spec.Env["PGPORT"])
	require.Equal(t, "127.0.0.1", spec.HostIP.String())
	require.Equal(t, 15432, spec.HostPort)
	require.Equal(t, int64(256<<20), spec.ShmSize)
	require.Equal(t, "primary", spec.Labels["org.cmpool.integration.node"])
	host, _ := os.Hostname()
	require.Equal(t, host+"/"+strconv.Itoa(os.Getpid()), spec.Labels["org.cmpool.integration.owner"])
	require.Equal(t, "trust", spec.Env["POSTGRES_HOST_AUTH_METHOD"])
	require.Equal(t, "postgres", spec.Env["POSTGRES_USER"])
	require.Len(t, spec.Files, 1)
	require.Equal(t, "/docker-entrypoint-initdb.d/cmpool-harness.sh", spec.Files[0].Path)
	require.Equal(t, int64(0o755), spec.Files[0].Mode)
	script, err := integration.ContainerInitScript(integration.Options{Replicas: 1})
	require.NoError(t, err)
	require.Equal(t, script, spec.Files[0].Content)
	require.Empty(t, spec.Entrypoint, "the primary runs the image's own entrypoint")
	require.Empty(t, spec.User)

	replica := &integration.Node{Name: "replica1", Role: integration.RoleReplica}
	spec, err = integration.ContainerSpecFor(integration.Options{}, replica, "primary", 15432, net, "", 15433)
	require.NoError(t, err)
	require.Equal(t, "replica1", spec.Alias)
	require.Empty(t, spec.Files)
	require.Equal(t, map[string]string{"PGPORT": "15433"}, spec.Env)
	require.Equal(t, "15433/tcp", spec.Port)
	require.Equal(t, "postgres", spec.User, "pg_basebackup and the server run as the postgres user")
	require.Equal(t, []string{"sh", "-c", integration.ContainerReplicaEntrypoint("replica1", "primary", 15432)}, spec.Entrypoint)
	require.False(t, spec.HostIP.IsValid(), "a remote engine publishes on every address")
	require.Equal(t, 15433, spec.HostPort)
}

func TestContainerHostAndPortErrors(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "::1": true, "127.0.0.2": true,
		"172.17.0.1": false, "docker.example": false, "": false,
	} {
		require.Equal(t, want, integration.IsLoopbackHost(host), host)
	}
	require.True(t, integration.PortTaken(errors.New("container start: Bind for 127.0.0.1:15432 failed: port is already allocated")))
	require.True(t, integration.PortTaken(errors.New("listen tcp4 127.0.0.1:15432: bind: address already in use")))
	require.False(t, integration.PortTaken(errors.New("pull access denied for nosuch/image")))
}

// TestContainerBackendWithoutDocker checks what a machine without a Docker engine gets: a
// clear error from Start, which StartCluster turns into a skip. A program that did not
// import integration/container gets an error naming it, which is not a skip.
func TestContainerBackendWithoutDocker(t *testing.T) {
	err := integration.CheckDockerWithoutEngine(t.Context())
	require.ErrorIs(t, err, integration.ErrNoContainerEngine)
	require.NotErrorIs(t, err, integration.ErrContainerBackendUnavailable)
	require.ErrorContains(t, err, "github.com/cmlite/cmpool/integration/container")

	if err := integration.CheckDocker(t.Context()); err == nil {
		t.Skip("a Docker engine is reachable: TestContainerClusterThroughProxy covers the backend")
	} else {
		require.ErrorIs(t, err, integration.ErrContainerBackendUnavailable)
	}
	_, err = integration.Start(t.Context(), integration.Options{Backend: integration.BackendContainer, Replicas: 1})
	require.ErrorIs(t, err, integration.ErrContainerBackendUnavailable)
}

// requireDocker skips the test when no Docker engine is reachable, except in CI, where the
// container backend must run.
func requireDocker(t *testing.T) {
	t.Helper()
	if err := integration.CheckDocker(t.Context()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("a Docker engine is required in CI: %v", err)
		}
		t.Skipf("no Docker engine reachable: %v", err)
	}
}

// TestContainerStartFailure: a primary whose server refuses its configuration exits its
// container. Start says so as soon as it has, with the server's complaint, instead of
// waiting for connections until its timeout.
func TestContainerStartFailure(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	_, err := integration.Start(ctxT(t, 5*time.Minute), integration.Options{
		Backend:  integration.BackendContainer,
		Settings: map[string]string{"shared_buffers": "plenty"},
	})
	t.Log(err)
	require.ErrorContains(t, err, "container exited")
	require.ErrorContains(t, err, `invalid value for parameter "shared_buffers"`, "the error carries the server's output")
}

// TestContainerNetworkPartition: a replica taken off the cluster's network (docker network
// disconnect) can be reached by nobody, falls behind, and catches up once reconnected.
func TestContainerNetworkPartition(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{Backend: integration.BackendContainer, Replicas: 1})
	replica := c.Replicas[0]
	ctx := ctxT(t, 3*time.Minute)
	primary := dial(t, c.Primary)
	_, err := primary.Exec(ctx, "CREATE TABLE partition_items (id int); INSERT INTO partition_items VALUES (1)")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))
	open := dial(t, replica)

	require.NoError(t, c.DisconnectNode(replica))
	require.NoError(t, c.DisconnectNode(replica), "disconnecting a disconnected node does nothing")
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = pgx.Connect(short, replica.URL("", ""))
	require.Error(t, err, "the replica's port answers nothing")
	_, err = open.Exec(short, "SELECT 1")
	require.Error(t, err, "a connection opened before the partition hangs")
	_, err = primary.Exec(ctx, "INSERT INTO partition_items VALUES (2)")
	require.NoError(t, err, "the primary goes on")

	require.NoError(t, c.ReconnectNode(ctx, replica))
	require.NoError(t, c.WaitReplication(ctx), "the replica streams again")
	var n int
	require.NoError(t, dial(t, replica).QueryRow(ctx, "SELECT count(*) FROM partition_items").Scan(&n))
	require.Equal(t, 2, n)
}

// testImage is the image the container backend would choose for a test.
func testImage(t *testing.T, e integration.ContainerEngine) string {
	if image := os.Getenv("CMPOOL_TEST_IMAGE"); image != "" {
		return image
	}
	if ok, err := e.HasImage(t.Context(), integration.LocalImage); err == nil && ok {
		return integration.LocalImage
	}
	return integration.DefaultImage
}

// TestContainerLeftoversRemoved: the containers and networks of a process that died before
// its Stop are removed by label; those of a live process stay.
func TestContainerLeftoversRemoved(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	ctx := ctxT(t, 2*time.Minute)
	e, err := integration.RegisteredEngine()
	require.NoError(t, err)
	image := testImage(t, e)

	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	host, err := os.Hostname()
	require.NoError(t, err)
	deadOwner := host + "/" + strconv.Itoa(gone.Process.Pid)
	run := func(owner string, net integration.ContainerNetwork) integration.Container {
		ctr, err := e.Run(ctx, integration.ContainerSpec{Image: image, Network: net, Alias: "leftover",
			Entrypoint: []string{"sh", "-c", "trap exit INT TERM; sleep 600 & wait"}, Labels: map[string]string{integration.LabelOwner: owner}})
		require.NoError(t, err)
		return ctr
	}
	deadNet, err := e.NewNetwork(ctx, map[string]string{integration.LabelOwner: deadOwner})
	require.NoError(t, err)
	dead := run(deadOwner, deadNet)
	live := run(integration.OwnerLabel(), nil)
	t.Cleanup(func() { _ = live.Terminate(context.Background()) })
	otherHost := run("elsewhere.example/1", nil)
	t.Cleanup(func() { _ = otherHost.Terminate(context.Background()) })

	n, err := integration.RemoveLeftovers(ctx, e)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 2, "the dead process's container and network")
	_, err = dead.Running(ctx)
	require.Error(t, err, "the dead process's container is gone")
	require.Error(t, deadNet.Remove(ctx), "the dead process's network is gone")
	for _, ctr := range []integration.Container{live, otherHost} {
		running, err := ctr.Running(ctx)
		require.NoError(t, err)
		require.True(t, running, "a live process's container, or another machine's, stays")
	}
}

// TestContainerClusterThroughProxy starts a primary and a replica in containers and cmpool in
// front of them. It runs only where a Docker engine is reachable.
func TestContainerClusterThroughProxy(t *testing.T) {
	if err := integration.CheckDocker(t.Context()); err != nil {
		t.Skipf("no Docker engine reachable: %v", err)
	}
	c := integration.StartCluster(t, integration.Options{Backend: integration.BackendContainer, Replicas: 1})
	require.NotEmpty(t, c.Primary.ContainerID)
	require.Len(t, c.Replicas, 1)
	require.NotEqual(t, c.Primary.Port, c.Replicas[0].Port)
	require.True(t, inRecovery(t, dial(t, c.Replicas[0])), "the replica is a standby")

	p := integration.StartProxy(t, c, pool.Config{Replicas: c.ReplicaURLs(), ReplicaCheckInterval: 100 * time.Millisecond})
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	ctx := ctxT(t, 2*time.Minute)
	_, err := conn.Exec(ctx, "create table container_items (id int primary key, name text)")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "insert into container_items values (1, 'one')")
	require.NoError(t, err)
	require.False(t, inRecovery(t, dial(t, c.Primary)))
	require.NoError(t, c.WaitReplication(ctx))

	// Once the monitor has seen the replica healthy, an autocommit read lands on it.
	require.Eventually(t, func() bool {
		var recovering bool
		return conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&recovering) == nil && recovering
	}, 30*time.Second, 50*time.Millisecond, "reads never reached the replica")
	var name string
	var recovering bool
	require.NoError(t, conn.QueryRow(ctx, "select name, pg_is_in_recovery() from container_items where id = 1").Scan(&name, &recovering))
	require.Equal(t, "one", name)
	require.True(t, recovering, "the routed read ran on the replica")

	// Node operations work on containers too, except the local-only ones.
	_, err = c.ServerPIDs(c.Primary)
	require.ErrorIs(t, err, integration.ErrLocalBackendOnly)
	require.NoError(t, c.StopNode(c.Replicas[0]))
	require.NoError(t, c.StartNode(ctx, c.Replicas[0]))
	_, err = conn.Exec(ctx, "insert into container_items values (2, 'two')")
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))
	require.NoError(t, dial(t, c.Replicas[0]).QueryRow(ctx, "select name from container_items where id = 2").Scan(&name))
	require.Equal(t, "two", name, "the restarted replica streams again on the same port")
	require.NoError(t, c.Stop())
}
