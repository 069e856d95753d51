package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrPostgresNotFound means no directory with the PostgreSQL server binaries (initdb, pg_ctl,
// postgres, pg_basebackup) was found. StartCluster skips the test on it, except in CI.
var ErrPostgresNotFound = errors.New("integration: PostgreSQL server binaries not found")

// ErrContainerBackendUnavailable means the container backend cannot run because no Docker engine
// is reachable (testcontainers-go's provider health check failed). StartCluster skips the test on
// it, except in CI.
var ErrContainerBackendUnavailable = errors.New("integration: container backend unavailable")

// ErrLocalBackendOnly is returned by the operations that only the local backend offers, such as
// ServerPIDs.
var ErrLocalBackendOnly = errors.New("integration: this operation needs the local backend")

// Roles of a Node.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// Superuser is the database superuser created by initdb. It is trusted on 127.0.0.1.
const Superuser = "postgres"

const (
	loopback     = "127.0.0.1"
	nodeConfFile = "cmpool_node.conf" // per-node settings, included last from postgresql.conf
	readyTimeout = 30 * time.Second   // bound on each wait for a server to accept connections or stream
	stopTimeout  = 60 * time.Second   // bound on pg_ctl stop
	pollInterval = 25 * time.Millisecond
	portAttempts = 3 // a start that fails on a port clash is retried on a new port
)

// Node is one PostgreSQL server of a Cluster.
type Node struct {
	// Name is "primary", "replica1", "replica2", ... It is also the server's cluster_name, so a
	// replica shows it as application_name in the primary's pg_stat_replication.
	Name string
	// Host is the address the server listens on: 127.0.0.1. In the container backend it is the
	// Docker host as this process reaches it: 127.0.0.1 for a local Docker engine.
	Host string
	// Port is the TCP port the server listens on. In the container backend it is the host port
	// mapped to the container's 5432; it stays the same across StopNode and StartNode.
	Port int
	// DataDir is the server's data directory. In the container backend it is empty: the data
	// lives in the container ($PGDATA).
	DataDir string
	// SocketDir is the directory of the server's Unix-domain socket. It also holds DataDir and
	// LogFile. Empty in the container backend.
	SocketDir string
	// LogFile is the server's log. Empty in the container backend, where the server logs to
	// the container's output (docker logs ContainerID).
	LogFile string
	// ContainerID is the Docker container of the node in the container backend, else empty.
	ContainerID string
	// Role is RolePrimary or RoleReplica. Promote turns a replica into a primary.
	Role string

	running      bool // guarded by Cluster.mu
	paused       bool // PauseNode froze it; guarded by Cluster.mu
	disconnected bool // DisconnectNode took it off the network; guarded by Cluster.mu
}

// URL returns a connection URL for the node, such as
// "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable". An empty database or user means
// "postgres".
func (n *Node) URL(database, user string) string {
	if database == "" {
		database = "postgres"
	}
	if user == "" {
		user = Superuser
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(user),
		Host:     n.Addr(),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Addr returns the node's "host:port".
func (n *Node) Addr() string {
	return net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
}

// Cluster is a running primary with its streaming replicas. Its methods are safe for concurrent
// use. Primary and Replicas keep the nodes as they were started; Promote changes only Node.Role.
type Cluster struct {
	Primary  *Node
	Replicas []*Node

	docker  *dockerCluster      // the container backend's state; nil for the local backend
	bin     string              // directory of the PostgreSQL binaries
	baseDir string              // holds every node's directory; removed by Stop
	runAs   *syscall.Credential // the postgres OS user when running as root, else nil
	logf    func(format string, args ...any)

	mu      sync.Mutex
	nodes   []*Node // every node created so far, for Stop
	stopped bool
}

// Start initializes and starts a primary and opts.Replicas streaming replicas on free loopback
// ports, and returns when every replica is streaming. On failure it stops whatever it started and
// removes its files. ctx bounds the start; the servers outlive it until Stop.
//
// With the container backend (see Options.Backend) the servers run in containers on a Docker
// network of their own, their ports published on the Docker host; see startContainers.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Replicas < 0 {
		return nil, fmt.Errorf("integration: negative Options.Replicas %d", opts.Replicas)
	}
	backend, image, err := resolveBackend(opts, os.Getenv)
	if err != nil {
		return nil, err
	}
	if backend == BackendContainer {
		return startContainers(ctx, opts, image)
	}
	bin, err := findPGBin(opts.PGBin)
	if err != nil {
		return nil, err
	}
	runAs, err := serverCredential()
	if err != nil {
		return nil, err
	}
	baseDir, err := makeBaseDir(opts.BaseDir, runAs)
	if err != nil {
		return nil, err
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &Cluster{bin: bin, baseDir: baseDir, runAs: runAs, logf: logf}
	started := false
	defer func() {
		if !started {
			_ = c.Stop()
		}
	}()

	begin := time.Now()
	c.logf("integration: starting postgres from %s in %s", bin, baseDir)
	c.Primary, err = c.newNode("primary", RolePrimary)
	if err != nil {
		return nil, err
	}
	if err := c.initPrimary(ctx, c.Primary, opts); err != nil {
		return nil, err
	}
	c.Replicas = make([]*Node, opts.Replicas)
	for i := range c.Replicas {
		if c.Replicas[i], err = c.newNode("replica"+strconv.Itoa(i+1), RoleReplica); err != nil {
			return nil, err
		}
	}
	errs := make([]error, len(c.Replicas))
	var wg sync.WaitGroup
	var backup sync.Mutex
	for i, n := range c.Replicas {
		wg.Go(func() { errs[i] = c.initReplica(ctx, n, &backup) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	started = true
	c.logf("integration: cluster with %d replica(s) ready in %s", len(c.Replicas), time.Since(begin).Round(time.Millisecond))
	return c, nil
}

// Stop shuts every node down (pg_ctl stop -m immediate) and removes all data. The container
// backend removes the containers, their volumes and their network. It is idempotent; calls
// after the first return nil.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var resumeErrs []error
	for _, n := range nodes {
		resumeErrs = append(resumeErrs, c.resume(n)) // a frozen server cannot shut down
	}
	if c.docker != nil {
		return errors.Join(append(resumeErrs, c.docker.remove(c))...)
	}

	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = c.stopServer(n, "immediate") })
	}
	wg.Wait()
	errs = append(errs, resumeErrs...)
	c.mu.Lock()
	for _, n := range nodes {
		n.running = false
	}
	c.mu.Unlock()
	if err := os.RemoveAll(c.baseDir); err != nil {
		errs = append(errs, fmt.Errorf("integration: remove %s: %w", c.baseDir, err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.logf("integration: cluster stopped and removed")
	return nil
}

// StopNode shuts one node down (pg_ctl stop -m fast; docker stop, which sends the image's
// SIGINT, in the container backend) and keeps its data, for failure tests. Stopping a stopped
// node does nothing.
func (c *Cluster) StopNode(n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	c.mu.Lock()
	running := n.running
	c.mu.Unlock()
	if !running {
		return nil
	}
	if err := c.resume(n); err != nil {
		return err
	}
	var err error
	if c.docker != nil {
		err = c.docker.stopNode(n)
	} else {
		err = c.stopServer(n, "fast")
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	n.running = false
	c.mu.Unlock()
	c.logf("integration: stopped %s", n.Name)
	return nil
}

// KillNode crashes a node: SIGKILL to its postmaster and every process it started, as a
// power loss would leave it (minus the page cache: the files keep what was written). It
// returns when they are gone. Data is kept, so StartNode runs crash recovery. Killing a
// stopped node does nothing. In the container backend it is docker kill (SIGKILL).
func (c *Cluster) KillNode(n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	c.mu.Lock()
	running := n.running
	c.mu.Unlock()
	if !running {
		return nil
	}
	if err := c.resume(n); err != nil {
		return err
	}
	if c.docker != nil {
		if err := c.docker.killNode(n); err != nil {
			return err
		}
		c.mu.Lock()
		n.running = false
		c.mu.Unlock()
		c.logf("integration: killed %s", n.Name)
		return nil
	}
	pid, err := postmasterPID(n)
	if err != nil {
		return fmt.Errorf("integration: kill %s: %w", n.Name, err)
	}
	// Stopped first, so that it forks nothing between the list of its children and the
	// kill: a backend forked meanwhile would outlive it, holding the shared memory that
	// keeps the node from starting again. Then killed first, so that it restarts nothing.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	pids := append(childPIDs(pid), pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(stopTimeout)
	for _, p := range pids {
		for syscall.Kill(p, 0) == nil && !isZombie(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("integration: kill %s: process %d does not exit", n.Name, p)
			}
			time.Sleep(pollInterval)
		}
	}
	// The lock files name the dead postmaster, whose pid stays taken until its zombie is
	// reaped; a reboot would clear them. pg_ctl stop would fail on the stale pid file.
	_ = os.Remove(filepath.Join(n.DataDir, "postmaster.pid"))
	_ = os.Remove(filepath.Join(n.SocketDir, fmt.Sprintf(".s.PGSQL.%d.lock", n.Port)))
	_ = os.Remove(filepath.Join(n.SocketDir, fmt.Sprintf(".s.PGSQL.%d", n.Port)))
	c.mu.Lock()
	n.running = false
	c.mu.Unlock()
	c.logf("integration: killed %s (%d processes)", n.Name, len(pids))
	return nil
}

// ServerPIDs returns the process ids of a running node: its postmaster first, then the
// processes it started (backends, walsender, checkpointer, ...). The container backend returns
// ErrLocalBackendOnly: the processes live in another PID namespace.
func (c *Cluster) ServerPIDs(n *Node) ([]int, error) {
	if err := c.check(n); err != nil {
		return nil, err
	}
	if c.docker != nil {
		return nil, fmt.Errorf("%w: ServerPIDs of %s", ErrLocalBackendOnly, n.Name)
	}
	pid, err := postmasterPID(n)
	if err != nil {
		return nil, err
	}
	return append([]int{pid}, childPIDs(pid)...), nil
}

// StartNode starts a node stopped by StopNode or KillNode again, on the same port, and waits until it accepts
// connections. A restarted replica reconnects to its primary by itself; use WaitReplication to
// wait until it has caught up. Starting a running node does nothing.
func (c *Cluster) StartNode(ctx context.Context, n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	c.mu.Lock()
	running := n.running
	c.mu.Unlock()
	if running {
		return nil
	}
	var err error
	if c.docker != nil {
		err = c.docker.startNode(ctx, c, n)
	} else {
		err = c.startServer(ctx, n)
	}
	if err != nil {
		return err
	}
	c.logf("integration: started %s on %s", n.Name, n.Addr())
	return nil
}

// Promote promotes a running replica (pg_ctl promote; SELECT pg_promote() in the container
// backend) and waits until pg_is_in_recovery() is false. It sets n.Role to RolePrimary;
// Cluster.Primary and Cluster.Replicas are not changed. The other replicas keep following the
// old primary.
func (c *Cluster) Promote(ctx context.Context, n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	c.mu.Lock()
	running, role := n.running, n.Role
	c.mu.Unlock()
	if role != RoleReplica {
		return fmt.Errorf("integration: promote %s: not a replica", n.Name)
	}
	if !running {
		return fmt.Errorf("integration: promote %s: node is stopped", n.Name)
	}
	if c.docker != nil {
		if err := c.docker.promote(ctx, n); err != nil {
			return err
		}
	} else if _, err := c.run(ctx, "pg_ctl", "promote", "-D", n.DataDir, "-w", "-t", waitSeconds(ctx)); err != nil {
		return fmt.Errorf("integration: promote %s: %w%s", n.Name, err, logTail(n.LogFile, 0))
	}
	err := c.poll(ctx, n, readyTimeout, "SELECT pg_is_in_recovery()", func(row []string) bool { return row[0] == "f" })
	if err != nil {
		return fmt.Errorf("integration: promote %s: wait for the end of recovery: %w%s", n.Name, err, logTail(n.LogFile, 0))
	}
	c.mu.Lock()
	n.Role = RolePrimary
	c.mu.Unlock()
	c.logf("integration: promoted %s", n.Name)
	return nil
}

// WaitReplication waits until every running replica has replayed the primary's WAL up to its
// current position. Replicas stopped with StopNode or promoted are skipped; the primary
// (Cluster.Primary) must be running. Writes committed on the primary before the call, even with
// synchronous_commit off, are visible on the replicas when it returns nil.
func (c *Cluster) WaitReplication(ctx context.Context) error {
	c.mu.Lock()
	primaryUp := c.Primary.running
	var replicas []*Node
	for _, n := range c.Replicas {
		if n.running && n.Role == RoleReplica {
			replicas = append(replicas, n)
		}
	}
	c.mu.Unlock()
	if !primaryUp {
		return fmt.Errorf("integration: wait for replication: %s is stopped", c.Primary.Name)
	}
	if len(replicas) == 0 {
		return nil
	}
	lsn, err := c.flushedLSN(ctx)
	if err != nil {
		return fmt.Errorf("integration: wait for replication: %w", err)
	}
	errs := make([]error, len(replicas))
	var wg sync.WaitGroup
	for i, n := range replicas {
		wg.Go(func() {
			sql := "SELECT coalesce(pg_last_wal_replay_lsn() >= '" + lsn + "'::pg_lsn, false)"
			if err := c.poll(ctx, n, 0, sql, func(row []string) bool { return row[0] == "t" }); err != nil {
				errs[i] = fmt.Errorf("integration: wait for %s to replay up to %s: %w", n.Name, lsn, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// flushedLSN flushes the primary's WAL and returns its write position. pg_current_wal_lsn() alone
// can lag behind asynchronous commits still in WAL buffers. A synchronously committed transaction
// that wrote WAL flushes all WAL before it; the transactional logical message is the cheapest WAL
// to write (replicas ignore it). A transaction that only takes an xid writes no WAL before its
// commit record, and its commit is not flushed.
func (c *Cluster) flushedLSN(ctx context.Context) (string, error) {
	conn, err := connect(ctx, c.Primary)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	const flush = "BEGIN; SET LOCAL synchronous_commit = local; SELECT pg_logical_emit_message(true, 'cmpool.integration', 'flush'); COMMIT"
	if _, err := conn.Exec(ctx, flush).ReadAll(); err != nil {
		return "", fmt.Errorf("flush wal on %s: %w", c.Primary.Name, err)
	}
	row, err := queryRow(ctx, conn, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return "", fmt.Errorf("read wal position of %s: %w", c.Primary.Name, err)
	}
	return row[0], nil
}

// check returns an error if n is not a node of c or c is stopped.
func (c *Cluster) check(n *Node) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("integration: cluster is stopped")
	}
	if n == nil || !slices.Contains(c.nodes, n) {
		return errors.New("integration: node does not belong to this cluster")
	}
	return nil
}

// freePort returns a port for one of the cluster's nodes (FreePort).
func (c *Cluster) freePort() (int, error) {
	return FreePort()
}
