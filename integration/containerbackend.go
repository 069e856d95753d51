package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	dockernetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
)

// The container backend runs every node in a container of Options.Image, on a Docker network
// of its own:
//
//   - The primary is initialized by the image's docker-entrypoint.sh. An init script
//     (containerInitScript) appends the harness's settings to postgresql.conf (listening on
//     every address, wal_level replica, max_wal_senders, ...) and writes pg_hba.conf, which
//     trusts replication connections from the network.
//   - Each replica runs containerReplicaEntrypoint as the postgres user: pg_basebackup -R from
//     the primary by its network alias, then docker-entrypoint.sh, which finds the data
//     directory initialized and starts the server as a standby.
//   - Port 5432 of each container is published on a host port chosen like the local backend's
//     ports, so that a node keeps its URL across StopNode and StartNode.

const (
	containerPort    = 5432
	containerPortTCP = "5432/tcp"
	initScriptPath   = "/docker-entrypoint-initdb.d/cmpool-harness.sh"
	// containerReadyTimeout bounds each wait for a container's server: the primary's first
	// start runs initdb and restarts once, a replica's runs pg_basebackup.
	containerReadyTimeout = 2 * time.Minute
	containerShmSize      = 256 << 20 // Docker's default /dev/shm of 64 MB is small for parallel queries
	heredocEnd            = "CMPOOL_HARNESS_EOF"
)

// resolveBackend returns the backend and container image Start uses for opts, reading the
// environment through getenv when opts leaves them empty.
func resolveBackend(opts Options, getenv func(string) string) (backend, image string, err error) {
	backend = opts.Backend
	if backend == "" {
		backend = strings.TrimSpace(getenv(EnvBackend))
	}
	switch backend {
	case "", BackendLocal:
		backend = BackendLocal
	case BackendContainer:
	default:
		from := "Options.Backend"
		if opts.Backend == "" {
			from = "$" + EnvBackend
		}
		return "", "", fmt.Errorf("integration: unknown %s %q (want %q or %q)", from, backend, BackendLocal, BackendContainer)
	}
	image = opts.Image
	if image == "" {
		image = strings.TrimSpace(getenv(EnvImage))
	}
	if image == "" {
		image = DefaultImage
	}
	return backend, image, nil
}

// CheckDocker returns nil when a Docker engine is reachable through testcontainers-go's default
// provider (DOCKER_HOST, ~/.testcontainers.properties, the usual sockets), else an error
// wrapping ErrContainerBackendUnavailable that says why.
func CheckDocker(ctx context.Context) error {
	if err := dockerHealth(ctx); err != nil {
		return fmt.Errorf("%w: %w (start a Docker engine or set DOCKER_HOST)", ErrContainerBackendUnavailable, err)
	}
	return nil
}

// dockerHealth runs testcontainers-go's provider health check.
func dockerHealth(ctx context.Context) (err error) {
	defer func() {
		// testcontainers-go panics when it finds no Docker socket at all.
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return err
	}
	defer provider.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return provider.Health(ctx)
}

// dockerCluster is the container backend's part of a Cluster.
type dockerCluster struct {
	image   string
	logger  logfLogger
	bindIP  netip.Addr // host address the ports are published on; invalid means every address
	network *testcontainers.DockerNetwork

	mu         sync.Mutex
	containers map[*Node]*testcontainers.DockerContainer
}

// startContainers is Start for the container backend.
func startContainers(ctx context.Context, opts Options, image string) (*Cluster, error) {
	if err := CheckDocker(ctx); err != nil {
		return nil, err
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrContainerBackendUnavailable, err)
	}
	host, err := provider.DaemonHost(ctx)
	_ = provider.Close()
	if err != nil {
		return nil, fmt.Errorf("integration: docker host: %w", err)
	}
	d := &dockerCluster{image: image, logger: logfLogger(logf), containers: map[*Node]*testcontainers.DockerContainer{}}
	if isLoopbackHost(host) {
		// A local engine: publish on loopback only, and connect there directly rather than
		// through "localhost", which may resolve to ::1 first.
		d.bindIP = netip.MustParseAddr(loopback)
		host = loopback
	}
	c := &Cluster{docker: d, logf: logf, ports: map[int]bool{}}
	started := false
	defer func() {
		if !started {
			_ = c.Stop()
		}
	}()

	begin := time.Now()
	c.logf("integration: starting postgres containers from %s", image)
	if d.network, err = network.New(ctx); err != nil {
		return nil, fmt.Errorf("integration: create docker network: %w", err)
	}
	c.Primary = c.newContainerNode("primary", RolePrimary, host)
	primaryOpts, err := primaryCustomizers(opts)
	if err != nil {
		return nil, err
	}
	if err := d.runNode(ctx, c, c.Primary, primaryOpts); err != nil {
		return nil, err
	}
	c.logf("integration: primary ready on %s", c.Primary.Addr())

	c.Replicas = make([]*Node, opts.Replicas)
	for i := range c.Replicas {
		c.Replicas[i] = c.newContainerNode("replica"+strconv.Itoa(i+1), RoleReplica, host)
	}
	errs := make([]error, len(c.Replicas))
	var wg sync.WaitGroup
	var backup sync.Mutex // the base backups take turns, as in the local backend
	for i, n := range c.Replicas {
		wg.Go(func() { errs[i] = d.initReplica(ctx, c, n, &backup) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	started = true
	c.logf("integration: container cluster with %d replica(s) ready in %s", len(c.Replicas), time.Since(begin).Round(time.Millisecond))
	return c, nil
}

// newContainerNode registers a node of the container backend.
func (c *Cluster) newContainerNode(name, role, host string) *Node {
	n := &Node{Name: name, Host: host, Role: role}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

// primaryCustomizers are the primary's container settings: the image's entrypoint initializes
// it, with trust authentication, and runs containerInitScript.
func primaryCustomizers(opts Options) ([]testcontainers.ContainerCustomizer, error) {
	script, err := containerInitScript(opts)
	if err != nil {
		return nil, err
	}
	return []testcontainers.ContainerCustomizer{
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_USER":             Superuser,
			"POSTGRES_HOST_AUTH_METHOD": "trust",
			"POSTGRES_INITDB_ARGS":      "-E UTF8 --locale=C --no-sync",
		}),
		testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader:            strings.NewReader(script),
			ContainerFilePath: initScriptPath,
			FileMode:          0o755,
		}),
	}, nil
}

// replicaCustomizers are a replica's container settings: containerReplicaEntrypoint as the
// postgres user.
func replicaCustomizers(name, primaryHost string) []testcontainers.ContainerCustomizer {
	return []testcontainers.ContainerCustomizer{
		testcontainers.WithConfigModifier(func(cfg *container.Config) { cfg.User = Superuser }),
		testcontainers.WithEntrypoint("sh", "-c", containerReplicaEntrypoint(name, primaryHost)),
	}
}

// nodeCustomizers adds to a node's own settings (extra) what every node has: the cluster's
// network, with the node's name as alias, port 5432 published on hostPort, a label, the logger.
func (d *dockerCluster) nodeCustomizers(n *Node, hostPort int, extra []testcontainers.ContainerCustomizer) []testcontainers.ContainerCustomizer {
	return append([]testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(d.logger),
		network.WithNetwork([]string{n.Name}, d.network),
		testcontainers.WithExposedPorts(containerPortTCP),
		testcontainers.WithHostConfigModifier(publishConfig(d.bindIP, hostPort)),
		testcontainers.WithLabels(map[string]string{"org.cmpool.integration.node": n.Name}),
	}, extra...)
}

// initReplica starts a replica container, which clones the primary, and waits until it streams.
func (d *dockerCluster) initReplica(ctx context.Context, c *Cluster, n *Node, backup *sync.Mutex) error {
	backup.Lock()
	err := d.runNode(ctx, c, n, replicaCustomizers(n.Name, c.Primary.Name))
	backup.Unlock()
	if err != nil {
		return err
	}
	if err := c.waitStreaming(ctx, n); err != nil {
		return fmt.Errorf("integration: %s does not stream from %s: %w%s", n.Name, c.Primary.Name, err, d.logTail(n))
	}
	c.logf("integration: %s streaming on %s", n.Name, n.Addr())
	return nil
}

// runNode creates and starts n's container on a free host port, trying another port if the
// chosen one was taken meanwhile, and waits until the server accepts connections from the host.
func (d *dockerCluster) runNode(ctx context.Context, c *Cluster, n *Node, extra []testcontainers.ContainerCustomizer) error {
	var err error
	for range portAttempts {
		if n.Port, err = c.freePort(); err != nil {
			return err
		}
		var ctr *testcontainers.DockerContainer
		ctr, err = testcontainers.Run(ctx, d.image, d.nodeCustomizers(n, n.Port, extra)...)
		if ctr != nil {
			d.mu.Lock()
			d.containers[n] = ctr
			d.mu.Unlock()
			n.ContainerID = ctr.GetContainerID()
		}
		if err == nil {
			break
		}
		if ctr != nil {
			d.mu.Lock()
			delete(d.containers, n)
			d.mu.Unlock()
			n.ContainerID = ""
			_ = testcontainers.TerminateContainer(ctr)
		}
		if !portTaken(err) {
			return fmt.Errorf("integration: start %s container from %s: %w", n.Name, d.image, err)
		}
		c.logf("integration: port %d taken, trying another for %s", n.Port, n.Name)
	}
	if err != nil {
		return fmt.Errorf("integration: start %s container from %s: %w", n.Name, d.image, err)
	}
	c.mu.Lock()
	n.running = true
	c.mu.Unlock()
	if err := c.poll(ctx, n, containerReadyTimeout, "SELECT 1", nil); err != nil {
		return fmt.Errorf("integration: %s does not accept connections on %s: %w%s", n.Name, n.Addr(), err, d.logTail(n))
	}
	return nil
}

// publishConfig publishes the container's port 5432 on bindIP:hostPort (every address when
// bindIP is the zero Addr) and enlarges /dev/shm.
func publishConfig(bindIP netip.Addr, hostPort int) func(*container.HostConfig) {
	return func(hc *container.HostConfig) {
		hc.ShmSize = containerShmSize
		if hc.PortBindings == nil {
			hc.PortBindings = dockernetwork.PortMap{}
		}
		hc.PortBindings[dockernetwork.MustParsePort(containerPortTCP)] = []dockernetwork.PortBinding{
			{HostIP: bindIP, HostPort: strconv.Itoa(hostPort)},
		}
	}
}

// logfLogger passes testcontainers-go's messages to Options.Logf.
type logfLogger func(format string, args ...any)

func (l logfLogger) Printf(format string, args ...any) { l(format, args...) }

// portTaken reports whether a container failed to start because its host port was taken.
func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

// isLoopbackHost reports whether the Docker host, as this process reaches it, is this machine.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (d *dockerCluster) container(n *Node) (*testcontainers.DockerContainer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ctr := d.containers[n]
	if ctr == nil {
		return nil, fmt.Errorf("integration: %s has no container", n.Name)
	}
	return ctr, nil
}

// stopNode stops n's container (docker stop: the image's stop signal, SIGINT, is a fast
// shutdown) and keeps it.
func (d *dockerCluster) stopNode(n *Node) error {
	ctr, err := d.container(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	timeout := stopTimeout / 2
	if err := ctr.Stop(ctx, &timeout); err != nil {
		return fmt.Errorf("integration: stop %s: %w", n.Name, err)
	}
	return nil
}

// killNode sends SIGKILL to n's container and waits until it has exited.
func (d *dockerCluster) killNode(n *Node) error {
	ctr, err := d.container(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("integration: kill %s: %w", n.Name, err)
	}
	defer cli.Close()
	if _, err := cli.ContainerKill(ctx, ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("integration: kill %s: %w", n.Name, err)
	}
	for {
		st, err := ctr.State(ctx)
		if err != nil {
			return fmt.Errorf("integration: kill %s: %w", n.Name, err)
		}
		if !st.Running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("integration: kill %s: container does not exit: %w", n.Name, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// startNode starts n's stopped container again, on the same host port, and waits until the
// server accepts connections. A replica's container finds its data directory and does not
// clone the primary again.
func (d *dockerCluster) startNode(ctx context.Context, c *Cluster, n *Node) error {
	ctr, err := d.container(n)
	if err != nil {
		return err
	}
	if err := ctr.Start(ctx); err != nil {
		return fmt.Errorf("integration: start %s: %w", n.Name, err)
	}
	c.mu.Lock()
	n.running = true
	c.mu.Unlock()
	if err := c.poll(ctx, n, containerReadyTimeout, "SELECT 1", nil); err != nil {
		return fmt.Errorf("integration: %s does not accept connections on %s: %w%s", n.Name, n.Addr(), err, d.logTail(n))
	}
	return nil
}

// promote promotes replica n with pg_promote(), which waits for the end of recovery.
func (d *dockerCluster) promote(ctx context.Context, n *Node) error {
	conn, err := connect(ctx, n)
	if err != nil {
		return fmt.Errorf("integration: promote %s: %w", n.Name, err)
	}
	defer conn.Close(context.Background())
	row, err := queryRow(ctx, conn, "SELECT pg_promote(true, 60)")
	if err == nil && row[0] != "t" {
		err = errors.New("pg_promote() returned false")
	}
	if err != nil {
		return fmt.Errorf("integration: promote %s: %w%s", n.Name, err, d.logTail(n))
	}
	return nil
}

// remove terminates every container, with its volumes, and then the network.
func (d *dockerCluster) remove(c *Cluster) error {
	d.mu.Lock()
	ctrs := make(map[*Node]*testcontainers.DockerContainer, len(d.containers))
	maps.Copy(ctrs, d.containers)
	d.mu.Unlock()
	var errs []error
	var errMu sync.Mutex
	var wg sync.WaitGroup
	for n, ctr := range ctrs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			if err := testcontainers.TerminateContainer(ctr, testcontainers.StopContext(ctx)); err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("integration: remove %s container: %w", n.Name, err))
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	for n := range ctrs {
		n.running = false
	}
	c.mu.Unlock()
	if d.network != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := d.network.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("integration: remove docker network: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.logf("integration: containers and network removed")
	return nil
}

// logTail returns the last lines of n's container output, formatted to be appended to an
// error message, or "" when there are none.
func (d *dockerCluster) logTail(n *Node) string {
	ctr, err := d.container(n)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := ctr.Logs(ctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(rc, 4<<20))
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 40 {
			lines = lines[len(lines)-20:]
		}
	}
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	if len(lines) == 0 {
		return ""
	}
	return "\n--- tail of the " + n.Name + " container's output ---\n" + strings.Join(lines, "\n")
}

// containerInitScript is the primary's init script, run by the image's docker-entrypoint.sh
// after initdb: it appends the harness settings to postgresql.conf, writes pg_hba.conf, the
// per-node settings and the TLS files.
func containerInitScript(opts Options) (string, error) {
	settings := maps.Clone(opts.Settings)
	files := map[string]string{}
	if opts.TLSCert != nil {
		if settings == nil {
			settings = map[string]string{}
		}
		files["server.crt"] = string(opts.TLSCert)
		files["server.key"] = string(opts.TLSKey)
		settings["ssl"] = "on"
		settings["ssl_cert_file"] = "server.crt"
		settings["ssl_key_file"] = "server.key"
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Written by the cmpool integration harness.\nset -e\n")
	heredoc := func(op, name, content string) error {
		if strings.Contains("\n"+content+"\n", "\n"+heredocEnd+"\n") {
			return fmt.Errorf("integration: %s holds the line %s", name, heredocEnd)
		}
		if !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		fmt.Fprintf(&b, "cat %s \"$PGDATA/%s\" <<'%s'\n%s%s\n", op, name, heredocEnd, content, heredocEnd)
		return nil
	}
	if err := heredoc(">>", "postgresql.conf", serverConf("*", opts.Replicas, settings)); err != nil {
		return "", err
	}
	if err := heredoc(">", "pg_hba.conf", hbaConf(opts.HBA, opts.PasswordAuth, anyNets)); err != nil {
		return "", err
	}
	if err := heredoc(">", nodeConfFile, containerNodeConf("primary")); err != nil {
		return "", err
	}
	for _, name := range []string{"server.crt", "server.key"} {
		content, ok := files[name]
		if !ok {
			continue
		}
		if err := heredoc(">", name, content); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "chmod 600 \"$PGDATA/%s\"\n", name)
	}
	return b.String(), nil
}

// containerNodeConf holds the settings that differ between the nodes of the container backend:
// they all listen on 5432 in their own container.
func containerNodeConf(name string) string {
	return fmt.Sprintf("# Per-node settings, written by the cmpool integration harness.\ncluster_name = %s\n", quoteConf(name))
}

// containerReplicaEntrypoint is the shell script a replica's container runs as the postgres
// user: on its first start it clones the primary (host primaryHost on the Docker network) with
// pg_basebackup -R and writes its own per-node settings; then it hands over to the image's
// docker-entrypoint.sh, which starts the server as a standby.
func containerReplicaEntrypoint(name, primaryHost string) string {
	return fmt.Sprintf(`set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	pg_basebackup -h %s -p %d -U %s -D "$PGDATA" -R -X stream -c fast --no-sync
	cat > "$PGDATA/%s" <<'%s'
%s%s
	chmod 700 "$PGDATA"
fi
exec docker-entrypoint.sh postgres
`, shellQuote(primaryHost), containerPort, shellQuote(Superuser), nodeConfFile, heredocEnd, containerNodeConf(name), heredocEnd)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
