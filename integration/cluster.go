package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrPostgresNotFound means no directory with the PostgreSQL server binaries (initdb, pg_ctl,
// postgres, pg_basebackup) was found. StartCluster skips the test on it, except in CI.
var ErrPostgresNotFound = errors.New("integration: PostgreSQL server binaries not found")

// ErrContainerBackendUnavailable means the container backend cannot run because no Docker engine
// is reachable (testcontainers-go's provider health check failed). StartCluster skips the test on
// it, in CI too.
var ErrContainerBackendUnavailable = errors.New("integration: container backend unavailable")

// ErrLocalBackendOnly is returned by the operations that only the local backend offers, such as
// ServerPIDs.
var ErrLocalBackendOnly = errors.New("integration: this operation needs the local backend")

// Backends for Options.Backend.
const (
	BackendLocal     = "local"
	BackendContainer = "container"
)

// DefaultImage is the container image used by the container backend when Options.Image and
// $CMPOOL_TEST_IMAGE are empty.
const DefaultImage = "postgres:16-alpine"

// Environment variables that choose the backend when Options leaves it open.
const (
	EnvBackend = "CMPOOL_TEST_BACKEND" // "local" or "container"
	EnvImage   = "CMPOOL_TEST_IMAGE"   // the container image
)

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

// Options configures Start. The zero value starts a primary without replicas from the newest local
// PostgreSQL installation.
type Options struct {
	// Replicas is the number of streaming replicas. Zero starts the primary only.
	Replicas int

	// PGBin is the directory with initdb, pg_ctl, postgres and pg_basebackup. Empty means $PG_BIN,
	// else the newest /usr/lib/postgresql/*/bin, else the directory of pg_ctl on $PATH. Local
	// backend only.
	PGBin string

	// Backend is BackendLocal (servers from the machine's PostgreSQL binaries) or
	// BackendContainer (servers in Docker containers, through testcontainers-go). Empty means
	// $CMPOOL_TEST_BACKEND, else BackendLocal.
	Backend string

	// Image is the container image for the container backend: an official postgres image or one
	// built like it (docker-entrypoint.sh, $PGDATA, pg_basebackup). Empty means
	// $CMPOOL_TEST_IMAGE, else DefaultImage.
	Image string

	// Settings are extra postgresql.conf settings for the primary and the replicas. They override
	// the harness defaults, except port, unix_socket_directories and cluster_name, which are per node.
	Settings map[string]string

	// HBA holds extra pg_hba.conf lines, placed before the default trust lines so they match first.
	HBA []string

	// PasswordAuth makes TCP logins of every user except the superuser (and replication)
	// use scram-sha-256 instead of trust. Unix-socket logins stay trusted. False keeps the
	// default: trust for everyone.
	PasswordAuth bool

	// TLSCert and TLSKey are a server certificate and key (PEM) to turn ssl on with. Nil
	// means ssl stays off.
	TLSCert, TLSKey []byte

	// BaseDir is the directory in which the cluster's own temporary directory is created (local
	// backend only). Empty means /dev/shm when it has at least 2 GiB free (memory-backed:
	// servers start several times faster), else os.TempDir(). When running as root, the
	// postgres OS user must be able to traverse it.
	BaseDir string

	// Logf receives progress messages. Nil means silent.
	Logf func(format string, args ...any)
}

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

	running bool // guarded by Cluster.mu
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
	ports   map[int]bool
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
	c := &Cluster{bin: bin, baseDir: baseDir, runAs: runAs, logf: logf, ports: map[int]bool{}}
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
	if c.docker != nil {
		return c.docker.remove(c)
	}

	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = c.stopServer(n, "immediate") })
	}
	wg.Wait()
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
	pids := append(childPIDs(pid), pid)
	_ = syscall.Kill(pid, syscall.SIGKILL) // first, so that it restarts nothing
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

// postmasterPID reads the postmaster's pid from its data directory.
func postmasterPID(n *Node) (int, error) {
	data, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad postmaster.pid: %q", first)
	}
	return pid, nil
}

// childPIDs lists the processes whose parent is pid, from /proc.
func childPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := procStat(p); ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// procStat returns a process's parent pid and state from /proc/PID/stat.
func procStat(pid int) (ppid int, state string) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0]
}

func isZombie(pid int) bool {
	_, state := procStat(pid)
	return state == "Z" || state == ""
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

// newNode registers a node and creates its directory.
func (c *Cluster) newNode(name, role string) (*Node, error) {
	dir := filepath.Join(c.baseDir, name)
	n := &Node{
		Name:      name,
		Host:      loopback,
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: dir,
		LogFile:   filepath.Join(dir, "postgres.log"),
		Role:      role,
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("integration: %w", err)
	}
	if err := c.chown(dir); err != nil {
		return nil, err
	}
	return n, nil
}

// initPrimary runs initdb, writes the configuration and starts the primary.
func (c *Cluster) initPrimary(ctx context.Context, n *Node, opts Options) error {
	_, err := c.run(ctx, "initdb", "-D", n.DataDir, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("integration: initdb for %s: %w", n.Name, err)
	}
	settings := maps.Clone(opts.Settings)
	if opts.TLSCert != nil {
		if settings == nil {
			settings = map[string]string{}
		}
		for name, pem := range map[string][]byte{"server.crt": opts.TLSCert, "server.key": opts.TLSKey} {
			if err := c.writeFile(filepath.Join(n.DataDir, name), string(pem)); err != nil {
				return err
			}
		}
		settings["ssl"] = "on"
		settings["ssl_cert_file"] = "server.crt"
		settings["ssl_key_file"] = "server.key"
	}
	confPath := filepath.Join(n.DataDir, "postgresql.conf")
	f, err := os.OpenFile(confPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("integration: %w", err)
	}
	_, err = f.WriteString(serverConf(loopback, opts.Replicas, settings))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("integration: write %s: %w", confPath, err)
	}
	// pg_basebackup copies pg_hba.conf and postgresql.conf to the replicas.
	if err := c.writeFile(filepath.Join(n.DataDir, "pg_hba.conf"), hbaConf(opts.HBA, opts.PasswordAuth, loopbackNets)); err != nil {
		return err
	}
	if err := c.startNew(ctx, n); err != nil {
		return err
	}
	c.logf("integration: primary ready on %s", n.Addr())
	return nil
}

// initReplica clones the primary with pg_basebackup, starts the copy and waits until it streams.
// The backups take turns (backup): the fast checkpoint of one can recycle the WAL segment another
// has yet to stream.
func (c *Cluster) initReplica(ctx context.Context, n *Node, backup *sync.Mutex) error {
	p := c.Primary
	backup.Lock()
	_, err := c.run(ctx, "pg_basebackup", "-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", Superuser,
		"-D", n.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	backup.Unlock()
	if err != nil {
		return fmt.Errorf("integration: pg_basebackup for %s: %w%s", n.Name, err, logTail(p.LogFile, 0))
	}
	if err := c.startNew(ctx, n); err != nil {
		return err
	}
	if err := c.waitStreaming(ctx, n); err != nil {
		return fmt.Errorf("integration: %s does not stream from %s: %w%s", n.Name, p.Name, err, logTail(n.LogFile, 0))
	}
	c.logf("integration: %s streaming on %s", n.Name, n.Addr())
	return nil
}

// startNew starts a new node on a free port, trying another port if the chosen one was taken
// meanwhile.
func (c *Cluster) startNew(ctx context.Context, n *Node) error {
	var err error
	for range portAttempts {
		if n.Port, err = c.freePort(); err != nil {
			return err
		}
		if err = c.writeFile(filepath.Join(n.DataDir, nodeConfFile), nodeConf(n)); err != nil {
			return err
		}
		if err = c.startServer(ctx, n); !errors.Is(err, errPortInUse) {
			return err
		}
		c.logf("integration: port %d taken, trying another for %s", n.Port, n.Name)
	}
	return err
}

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("port in use")

// startServer runs pg_ctl start and waits until the server accepts connections.
func (c *Cluster) startServer(ctx context.Context, n *Node) error {
	logStart := fileSize(n.LogFile)
	_, err := c.run(ctx, "pg_ctl", "start", "-D", n.DataDir, "-l", n.LogFile, "-w", "-t", waitSeconds(ctx))
	if err != nil {
		tail := logTail(n.LogFile, logStart)
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("integration: start %s on port %d: %w%s", n.Name, n.Port, err, tail)
	}
	c.mu.Lock()
	n.running = true
	c.mu.Unlock()
	if err := c.poll(ctx, n, readyTimeout, "SELECT 1", nil); err != nil {
		return fmt.Errorf("integration: %s does not accept connections on %s: %w%s", n.Name, n.Addr(), err, logTail(n.LogFile, logStart))
	}
	return nil
}

// stopServer runs pg_ctl stop if the node has a postmaster.pid. If pg_ctl fails it sends the
// postmaster SIGQUIT (immediate shutdown) so that no server is left behind.
func (c *Cluster) stopServer(n *Node, mode string) error {
	pidFile := filepath.Join(n.DataDir, "postmaster.pid")
	if _, err := os.Stat(pidFile); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	_, err := c.run(ctx, "pg_ctl", "stop", "-D", n.DataDir, "-m", mode, "-w", "-t", waitSeconds(ctx))
	if err == nil {
		return nil
	}
	if data, rerr := os.ReadFile(pidFile); rerr == nil {
		first, _, _ := strings.Cut(string(data), "\n")
		if pid, perr := strconv.Atoi(strings.TrimSpace(first)); perr == nil && pid > 0 {
			if syscall.Kill(pid, syscall.SIGQUIT) == nil {
				c.logf("integration: pg_ctl stop failed for %s, sent SIGQUIT to %d", n.Name, pid)
			}
		}
	}
	return fmt.Errorf("integration: stop %s: %w", n.Name, err)
}

// waitStreaming waits until replica n is in recovery and streaming from the primary, and the
// primary lists it in pg_stat_replication.
func (c *Cluster) waitStreaming(ctx context.Context, n *Node) error {
	err := c.poll(ctx, n, readyTimeout, "SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), '')",
		func(row []string) bool { return row[0] == "t" && row[1] == "streaming" })
	if err != nil {
		return err
	}
	sql := "SELECT count(*) FROM pg_stat_replication WHERE application_name = '" + n.Name + "' AND state = 'streaming'"
	return c.poll(ctx, c.Primary, readyTimeout, sql, func(row []string) bool { return row[0] != "0" })
}

// poll runs sql on n until done accepts its first row (nil done: until it runs at all), reconnecting
// as needed, for at most timeout (0: until ctx ends).
func (c *Cluster) poll(ctx context.Context, n *Node, timeout time.Duration, sql string, done func(row []string) bool) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var lastErr error
	for {
		if conn == nil || conn.IsClosed() {
			conn, lastErr = connect(ctx, n)
		}
		if conn != nil && !conn.IsClosed() {
			var row []string
			row, lastErr = queryRow(ctx, conn, sql)
			if lastErr == nil && (done == nil || done(row)) {
				return nil
			}
			if lastErr == nil {
				lastErr = fmt.Errorf("%s returned %v", sql, row)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), lastErr)
		case <-time.After(pollInterval):
		}
	}
}

// connect opens a connection to n as the superuser, each attempt bounded to a few seconds.
func connect(ctx context.Context, n *Node) (*pgconn.PgConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgconn.Connect(ctx, n.URL("postgres", Superuser))
}

// queryRow runs sql with the simple protocol and returns the first row of its last result as text.
func queryRow(ctx context.Context, conn *pgconn.PgConn, sql string) ([]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(results) == 0 || len(results[len(results)-1].Rows) == 0 {
		return nil, fmt.Errorf("%s returned no rows", sql)
	}
	raw := results[len(results)-1].Rows[0]
	row := make([]string, len(raw))
	for i, v := range raw {
		row[i] = string(v)
	}
	return row, nil
}

// run runs a PostgreSQL binary, as the postgres OS user when running as root, in its own
// process group so that a terminal's Ctrl-C reaches only the caller, which cancels ctx.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.baseDir // PostgreSQL binaries need a readable working directory
	cmd.Env = serverEnv(c.baseDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.runAs}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, msg)
	}
	return string(out), nil
}

// serverEnv is the environment of the PostgreSQL binaries: the caller's without PG* variables,
// which would change what initdb, pg_ctl and pg_basebackup do.
func serverEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// writeFile writes a file readable by the server.
func (c *Cluster) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("integration: %w", err)
	}
	return c.chown(path)
}

// chown gives path to the postgres OS user when running as root.
func (c *Cluster) chown(path string) error {
	if c.runAs == nil {
		return nil
	}
	if err := os.Chown(path, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
		return fmt.Errorf("integration: %w", err)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago and that this cluster does not use.
func (c *Cluster) freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			return 0, fmt.Errorf("integration: find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		c.mu.Lock()
		taken := c.ports[port]
		c.ports[port] = true
		c.mu.Unlock()
		if !taken {
			return port, nil
		}
	}
}

// serverConf is appended to the primary's postgresql.conf; replicas inherit it. The include of the
// per-node file comes last so that port and socket directory cannot be overridden. listen is
// listen_addresses.
func serverConf(listen string, replicas int, settings map[string]string) string {
	var b strings.Builder
	b.WriteString("\n# Added by the cmpool integration harness.\n")
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(v)) }
	set("listen_addresses", listen)
	set("wal_level", "replica")
	set("max_wal_senders", strconv.Itoa(max(10, replicas+3))) // every replica, and a pg_basebackup
	set("hot_standby", "on")
	set("max_connections", "300")
	set("fsync", "off")
	set("synchronous_commit", "off")
	set("full_page_writes", "off")
	set("shared_buffers", "128MB")
	set("logging_collector", "off")
	set("wal_retrieve_retry_interval", "500ms") // a replica reconnects quickly to a restarted primary
	// Keep WAL for replicas that start streaming after later base backups' checkpoints
	// have passed them (no slots: a stopped replica must not fill the disk).
	set("wal_keep_size", "256MB")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		set(k, settings[k])
	}
	fmt.Fprintf(&b, "include_if_exists = %s\n", quoteConf(nodeConfFile))
	return b.String()
}

// nodeConf holds the settings that differ between nodes.
func nodeConf(n *Node) string {
	return fmt.Sprintf("# Per-node settings, written by the cmpool integration harness.\nport = %d\nunix_socket_directories = %s\ncluster_name = %s\n",
		n.Port, quoteConf(n.SocketDir), quoteConf(n.Name))
}

// Client networks trusted by pg_hba.conf: loopback for the local backend; any address for the
// container backend, whose clients come through the Docker network and its port mapping.
var (
	loopbackNets = []string{"127.0.0.1/32", "::1/128"}
	anyNets      = []string{"0.0.0.0/0", "::/0"}
)

// hbaConf is the primary's pg_hba.conf: the extra lines first, then trust for Unix-socket
// connections and TCP ones from nets, replication included. With passwordAuth, TCP logins of
// every user but the superuser (and replication) use scram-sha-256.
func hbaConf(extra []string, passwordAuth bool, nets []string) string {
	var b strings.Builder
	b.WriteString("# Written by the cmpool integration harness.\n")
	for _, line := range extra {
		b.WriteString(line + "\n")
	}
	line := func(typ, db, user, addr, method string) {
		fmt.Fprintf(&b, "%-7s %-12s %-10s %-13s %s\n", typ, db, user, addr, method)
	}
	if passwordAuth {
		for _, n := range nets {
			line("host", "all", Superuser, n, "trust")
			line("host", "replication", "all", n, "trust")
		}
		for _, n := range nets {
			line("host", "all", "all", n, "scram-sha-256")
		}
	}
	line("local", "all", "all", "", "trust")
	for _, n := range nets {
		line("host", "all", "all", n, "trust")
	}
	line("local", "replication", "all", "", "trust")
	for _, n := range nets {
		line("host", "replication", "all", n, "trust")
	}
	return b.String()
}

func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// findPGBin returns the first candidate directory that holds all the binaries the harness runs.
func findPGBin(dir string) (string, error) {
	var candidates []string
	switch {
	case dir != "":
		candidates = []string{dir}
	case os.Getenv("PG_BIN") != "":
		candidates = []string{os.Getenv("PG_BIN")}
	default:
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		slices.SortFunc(matches, func(a, b string) int { // newest version first
			return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
		})
		candidates = matches
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			candidates = append(candidates, filepath.Dir(p))
		}
	}
	for _, d := range candidates {
		if hasBinaries(d) {
			return d, nil
		}
	}
	if len(candidates) == 0 {
		return "", fmt.Errorf("%w: no /usr/lib/postgresql/*/bin and no pg_ctl on $PATH; set Options.PGBin or $PG_BIN", ErrPostgresNotFound)
	}
	return "", fmt.Errorf("%w: none of %s holds initdb, pg_ctl, postgres and pg_basebackup; set Options.PGBin or $PG_BIN",
		ErrPostgresNotFound, strings.Join(candidates, ", "))
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres", "pg_basebackup"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions compares dotted version strings such as "9.6" and "15" numerically.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return strings.Compare(a, b)
}

// serverCredential returns the postgres OS user's credential when running as root (the server
// refuses to run as root), else nil.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(Superuser)
	if err != nil {
		return nil, fmt.Errorf("integration: running as root needs an OS user %q to run PostgreSQL: %w", Superuser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("integration: uid of %q: %w", Superuser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("integration: gid of %q: %w", Superuser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeBaseDir creates the directory that holds all nodes in parent (see Options.BaseDir). Its
// path stays short, because a Unix socket path has at most 107 bytes, and when running as root
// the postgres user must be able to reach it.
func makeBaseDir(parent string, runAs *syscall.Credential) (string, error) {
	if parent == "" {
		parent = defaultParent(runAs)
	}
	if len(parent) > maxParentLen {
		return "", fmt.Errorf("integration: base directory %s is too long for Unix socket paths (at most %d bytes)", parent, maxParentLen)
	}
	if runAs != nil && !traversable(parent) {
		return "", fmt.Errorf("integration: the postgres OS user cannot reach base directory %s: every directory on its path must be searchable by others (mode o+x)", parent)
	}
	dir, err := os.MkdirTemp(parent, "cmpool-pg-")
	if err != nil {
		return "", fmt.Errorf("integration: %w", err)
	}
	if runAs != nil {
		err = os.Chmod(dir, 0o755)
		if err == nil {
			err = os.Chown(dir, int(runAs.Uid), int(runAs.Gid))
		}
		if err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("integration: %w", err)
		}
	}
	return dir, nil
}

// maxParentLen keeps "PARENT/cmpool-pg-NNNNNNNNNN/replicaNN/.s.PGSQL.NNNNN" within 107 bytes.
const maxParentLen = 60

// minShmFree is the free space /dev/shm needs to be chosen: the WAL of a busy node grows to
// max_wal_size (1 GB). Container runtimes often give /dev/shm only 64 MB.
const minShmFree = 2 << 30

// defaultParent returns /dev/shm when it is usable and roomy, else os.TempDir(), else /tmp.
func defaultParent(runAs *syscall.Credential) string {
	const shm = "/dev/shm"
	var st syscall.Statfs_t
	if fi, err := os.Stat(shm); err == nil && fi.IsDir() && fi.Mode().Perm()&0o002 != 0 &&
		syscall.Statfs(shm, &st) == nil && uint64(st.Bavail)*uint64(st.Bsize) >= minShmFree {
		return shm
	}
	parent := os.TempDir()
	if len(parent) > maxParentLen || (runAs != nil && !traversable(parent)) {
		return "/tmp"
	}
	return parent
}

// traversable reports whether every directory from dir up to the root can be searched by others.
func traversable(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// waitSeconds is the pg_ctl -t argument for ctx: the seconds left until its deadline, at most
// a minute.
func waitSeconds(ctx context.Context) string {
	secs := 60
	if dl, ok := ctx.Deadline(); ok {
		secs = min(secs, max(1, int(time.Until(dl).Seconds())))
	}
	return strconv.Itoa(secs)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the last lines a server wrote to its log after offset, formatted to be
// appended to an error message, or "" when there are none.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxBytes = 8 << 10
	if size := fileSize(path); size-offset > maxBytes {
		offset = size - maxBytes
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	if len(lines) == 0 || len(lines[0]) == 0 {
		return ""
	}
	return "\n--- tail of " + path + " ---\n" + string(bytes.Join(lines, []byte("\n")))
}
