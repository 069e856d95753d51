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
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
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
//   - Each server listens on a port chosen like the local backend's ports ($PGPORT), which
//     is published on the same host port: a node keeps its URL across StopNode and
//     StartNode, and inet_server_port() is Node.Port on both backends.
//   - Every container and the network carry the label org.cmpool.integration.owner, naming
//     the machine and the process that made them. Stop removes them; a process that died
//     before its Stop leaves them behind, and the next Start on that machine removes them.
//     No reaper container (testcontainers-go's Ryuk) is needed.

const (
	initScriptPath = "/docker-entrypoint-initdb.d/cmpool-harness.sh"
	// containerReadyTimeout bounds each wait for a container's server: the primary's first
	// start runs initdb and restarts once, a replica's runs pg_basebackup.
	containerReadyTimeout = 2 * time.Minute
	containerShmSize      = 256 << 20 // Docker's default /dev/shm of 64 MB is small for parallel queries
	heredocEnd            = "CMPOOL_HARNESS_EOF"
	// exitCheckInterval is how often a wait for a container's server checks that the
	// container still runs.
	exitCheckInterval = 250 * time.Millisecond
)

// Labels on the containers and networks of the container backend.
const (
	LabelNode  = "org.cmpool.integration.node"  // the node's name
	LabelOwner = "org.cmpool.integration.owner" // "HOSTNAME/PID" of the process that made it
)

// dockerCluster is the container backend's part of a Cluster.
type dockerCluster struct {
	engine  ContainerEngine
	image   string
	logf    func(format string, args ...any)
	bindIP  netip.Addr // host address the ports are published on; invalid means every address
	network ContainerNetwork

	mu         sync.Mutex
	containers map[*Node]Container
}

// startContainers is Start for the container backend.
func startContainers(ctx context.Context, opts Options, image string) (*Cluster, error) {
	if err := CheckDocker(ctx); err != nil {
		return nil, err
	}
	e, err := containerEngine()
	if err != nil {
		return nil, err
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	host, err := e.Host(ctx)
	if err != nil {
		return nil, fmt.Errorf("integration: docker host: %w", err)
	}
	if opts.Image == "" && os.Getenv(EnvImage) == "" {
		if ok, err := e.HasImage(ctx, LocalImage); err == nil && ok {
			image = LocalImage
		}
	}
	d := &dockerCluster{engine: e, image: image, logf: logf, containers: map[*Node]Container{}}
	if isLoopbackHost(host) {
		// A local engine: publish on loopback only, and connect there directly rather than
		// through "localhost", which may resolve to ::1 first.
		d.bindIP = netip.MustParseAddr(loopback)
		host = loopback
	}
	c := &Cluster{docker: d, logf: logf}
	started := false
	defer func() {
		if !started {
			_ = c.Stop()
		}
	}()

	begin := time.Now()
	c.logf("integration: starting postgres containers from %s", image)
	removeLeftovers(ctx, e, logf)
	if d.network, err = e.NewNetwork(ctx, map[string]string{LabelOwner: ownerLabel()}); err != nil {
		return nil, fmt.Errorf("integration: create docker network: %w", err)
	}
	c.Primary = c.newContainerNode("primary", RolePrimary, host)
	spec, err := d.nodeSpec(opts, c.Primary, nil)
	if err != nil {
		return nil, err
	}
	if err := d.runNode(ctx, c, c.Primary, spec); err != nil {
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
		wg.Go(func() { errs[i] = d.initReplica(ctx, c, opts, n, &backup) })
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

// nodeSpec is node n's container, but for its port (runNode picks it and sets Port, HostPort
// and $PGPORT):
//
//   - every node is on the cluster's network with its name as alias, and publishes its port
//     on the host, with labels naming it and its owner;
//   - the primary is initialized by the image's entrypoint, with trust authentication, which
//     runs containerInitScript;
//   - a replica runs containerReplicaEntrypoint (cloning primary) as the postgres user.
func (d *dockerCluster) nodeSpec(opts Options, n *Node, primary *Node) (ContainerSpec, error) {
	spec := ContainerSpec{
		Image:   d.image,
		Network: d.network,
		Alias:   n.Name,
		HostIP:  d.bindIP,
		ShmSize: containerShmSize,
		Env:     map[string]string{},
		Labels:  map[string]string{LabelNode: n.Name, LabelOwner: ownerLabel()},
		Logf:    d.logf,
	}
	if n.Role != RolePrimary {
		spec.User = Superuser
		spec.Entrypoint = []string{"sh", "-c", containerReplicaEntrypoint(n.Name, primary.Name, primary.Port)}
		return spec, nil
	}
	script, err := containerInitScript(opts)
	if err != nil {
		return ContainerSpec{}, err
	}
	spec.Env["POSTGRES_USER"] = Superuser
	spec.Env["POSTGRES_HOST_AUTH_METHOD"] = "trust"
	spec.Env["POSTGRES_INITDB_ARGS"] = "-E UTF8 --locale=C --no-sync"
	spec.Files = []ContainerFile{{Path: initScriptPath, Content: script, Mode: 0o755}}
	return spec, nil
}

// initReplica starts a replica container, which clones the primary, and waits until it streams.
func (d *dockerCluster) initReplica(ctx context.Context, c *Cluster, opts Options, n *Node, backup *sync.Mutex) error {
	spec, err := d.nodeSpec(opts, n, c.Primary)
	if err != nil {
		return err
	}
	backup.Lock()
	err = d.runNode(ctx, c, n, spec)
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

// runNode creates and starts n's container on a free port, trying another port if the
// chosen one was taken meanwhile, and waits until the server accepts connections from the host.
// The server listens on that port in the container too.
func (d *dockerCluster) runNode(ctx context.Context, c *Cluster, n *Node, spec ContainerSpec) error {
	var err error
	for range portAttempts {
		if n.Port, err = c.freePort(); err != nil {
			return err
		}
		spec = withPort(spec, n.Port)
		var ctr Container
		ctr, err = d.engine.Run(ctx, spec)
		if ctr != nil {
			d.mu.Lock()
			d.containers[n] = ctr
			d.mu.Unlock()
			n.ContainerID = ctr.ID()
		}
		if err == nil {
			break
		}
		if ctr != nil {
			d.mu.Lock()
			delete(d.containers, n)
			d.mu.Unlock()
			n.ContainerID = ""
			tctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			_ = ctr.Terminate(tctx)
			cancel()
		}
		if !portTaken(err) {
			return fmt.Errorf("integration: start %s container from %s: %w", n.Name, d.image, err)
		}
		c.logf("integration: port %d taken, trying another for %s", n.Port, n.Name)
	}
	if err != nil {
		return fmt.Errorf("integration: start %s container from %s: %w", n.Name, d.image, err)
	}
	return d.awaitNode(ctx, c, n)
}

// withPort is spec with its server on port: $PGPORT, published on the same host port.
func withPort(spec ContainerSpec, port int) ContainerSpec {
	spec.Env = maps.Clone(spec.Env)
	if spec.Env == nil {
		spec.Env = map[string]string{}
	}
	spec.Env["PGPORT"] = strconv.Itoa(port)
	spec.Port = strconv.Itoa(port) + "/tcp"
	spec.HostPort = port
	return spec
}

// errContainerExited ends a wait for a container's server when the container has exited.
var errContainerExited = errors.New("container exited")

// awaitNode marks n's started container running and waits until its server accepts
// connections from the host. It gives up as soon as the container has exited.
func (d *dockerCluster) awaitNode(ctx context.Context, c *Cluster, n *Node) error {
	c.mu.Lock()
	n.running = true
	c.mu.Unlock()
	ctr, err := d.container(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if running, err := ctr.Running(ctx); err == nil && !running {
				cancel(errContainerExited)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(exitCheckInterval):
			}
		}
	}()
	err = c.poll(ctx, n, containerReadyTimeout, "SELECT 1", nil)
	cancel(nil)
	<-watched
	if err != nil {
		if errors.Is(context.Cause(ctx), errContainerExited) {
			err = errContainerExited
		}
		return fmt.Errorf("integration: %s does not accept connections on %s: %w%s", n.Name, n.Addr(), err, d.logTail(n))
	}
	return nil
}

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

func (d *dockerCluster) container(n *Node) (Container, error) {
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
	if err := ctr.Stop(ctx, stopTimeout/2); err != nil {
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
	if err := ctr.Kill(ctx); err != nil {
		return fmt.Errorf("integration: kill %s: %w", n.Name, err)
	}
	for {
		running, err := ctr.Running(ctx)
		if err != nil {
			return fmt.Errorf("integration: kill %s: %w", n.Name, err)
		}
		if !running {
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
	return d.awaitNode(ctx, c, n)
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
	ctrs := make(map[*Node]Container, len(d.containers))
	maps.Copy(ctrs, d.containers)
	d.mu.Unlock()
	var errs []error
	var errMu sync.Mutex
	var wg sync.WaitGroup
	for n, ctr := range ctrs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			if err := ctr.Terminate(ctx); err != nil {
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

// pauseNode pauses (docker pause) or unpauses n's container.
func (d *dockerCluster) pauseNode(n *Node, pause bool) error {
	ctr, err := d.container(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if pause {
		return ctr.Pause(ctx)
	}
	return ctr.Unpause(ctx)
}

// connectNode connects n's container to the cluster's network, under its name, or
// disconnects it.
func (d *dockerCluster) connectNode(n *Node, connect bool) error {
	ctr, err := d.container(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if connect {
		return d.network.Connect(ctx, ctr.ID(), n.Name)
	}
	return d.network.Disconnect(ctx, ctr.ID())
}
