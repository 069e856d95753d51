package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
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
)

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
	// After a kill -9, a backend the postmaster was forking as it died can outlive it for a
	// moment, attached to the old shared memory: PostgreSQL refuses to start until it exits.
	for try := 0; err != nil && try < 20 && ctx.Err() == nil &&
		strings.Contains(logTail(n.LogFile, logStart), "pre-existing shared memory block"); try++ {
		time.Sleep(250 * time.Millisecond)
		logStart = fileSize(n.LogFile)
		_, err = c.run(ctx, "pg_ctl", "start", "-D", n.DataDir, "-l", n.LogFile, "-w", "-t", waitSeconds(ctx))
	}
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
