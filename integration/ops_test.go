package integration_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// The cmpool binary under operations: /metrics and /readyz, SIGHUP reload, SIGTERM drain,
// and a rolling restart of two processes sharing a port.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// cmpoolBinary builds cmd/cmpool once per test run.
func cmpoolBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cmpool-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "cmpool")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/cmpool").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := integration.FreePort()
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// cmpoolProcess is a running cmpool binary.
type cmpoolProcess struct {
	cmd     *exec.Cmd
	addr    string
	metrics string
	logs    *syncBuffer
	exited  chan struct{} // closed when the process has exited; then err is its result
	err     error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBinary runs cmpool with a TOML config file holding config, listening on addr,
// and waits until it accepts connections.
func startBinary(t *testing.T, configPath, addr, metrics string) *cmpoolProcess {
	t.Helper()
	cmd := exec.Command(cmpoolBinary(t), "--config", configPath, "--listen", addr, "--metrics-listen", metrics)
	cmd.Env = append(os.Environ(), "DATABASE_URL=", "REPLICA_URLS=")
	p := launch(t, cmd, addr, metrics)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "cmpool did not become ready:\n%s", p.logs.String())
	return p
}

// launch starts cmd, the cmpool binary serving on addr (metrics on metrics), and stops it
// with SIGINT when the test ends, printing its logs if the test failed.
func launch(t *testing.T, cmd *exec.Cmd, addr, metrics string) *cmpoolProcess {
	t.Helper()
	p := &cmpoolProcess{cmd: cmd, addr: addr, metrics: metrics, logs: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	require.NoError(t, cmd.Start())
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("cmpool %s logs:\n%s", addr, p.logs.String())
		}
	})
	return p
}

func (p *cmpoolProcess) url(database, user string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, p.addr, database)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// metricValue sums the samples of a metric whose labels contain every given label.
func metricValue(t *testing.T, body, name string, labels ...string) float64 {
	t.Helper()
	sum, found := 0.0, false
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err)
		sum, found = sum+v, true
	}
	require.True(t, found, "metric %s%v not found", name, labels)
	return sum
}

// writeConfig writes a cmpool.toml for the cluster, with explicit trust: the binary listens
// on loopback and these tests are not about authentication (see integration.WithTestAuth).
func writeConfig(t *testing.T, path string, c *integration.Cluster, extra string) {
	t.Helper()
	content := fmt.Sprintf("primary = %q\nauth_type = \"trust\"\nadmin_users = \"postgres\"\nso_reuseport = true\n%s", c.Primary.URL("", ""), extra)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func TestBinaryMetricsAndReload(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 60*time.Second)
	cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
	writeConfig(t, cfgPath, c, "default_pool_size = 5\n")
	p := startBinary(t, cfgPath, freeAddr(t), freeAddr(t))
	metricsURL := "http://" + p.metrics + "/metrics"

	code, body := httpGet(t, "http://"+p.metrics+"/healthz")
	require.Equal(t, http.StatusOK, code, body)
	conn := connect(t, p.url("postgres", "postgres"), pgx.QueryExecModeExec)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))

	_, before := httpGet(t, metricsURL)
	xacts0 := metricValue(t, before, "cmpool_transactions_total", `database="postgres"`)
	queries0 := metricValue(t, before, "cmpool_query_duration_seconds_count", `database="postgres"`)
	slow0 := metricValue(t, before, "cmpool_query_duration_seconds_bucket", `database="postgres"`, `le="0.0001"`)

	for i := range 20 {
		require.NoError(t, conn.QueryRow(ctx, "select $1::int", i).Scan(&one))
	}
	_, err := conn.Exec(ctx, "select pg_sleep(0.2)")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "select 1/0")
	require.Error(t, err)

	_, after := httpGet(t, metricsURL)
	require.GreaterOrEqual(t, metricValue(t, after, "cmpool_transactions_total", `database="postgres"`)-xacts0, 21.0)
	require.GreaterOrEqual(t, metricValue(t, after, "cmpool_query_duration_seconds_count", `database="postgres"`)-queries0, 22.0)
	// The 200 ms query lands above the 100 ms bucket.
	total := metricValue(t, after, "cmpool_query_duration_seconds_count", `database="postgres"`)
	under100ms := 0.0
	for _, le := range []string{"0.1", "0.10000000000000002", "0.09999999999999999"} {
		if strings.Contains(after, `le="`+le+`"`) {
			under100ms = metricValue(t, after, "cmpool_query_duration_seconds_bucket", `database="postgres"`, `le="`+le+`"`)
		}
	}
	require.Less(t, under100ms, total, "the slow query is in a bucket above 100 ms")
	require.GreaterOrEqual(t, metricValue(t, after, "cmpool_query_duration_seconds_bucket", `database="postgres"`, `le="0.0001"`), slow0)
	require.GreaterOrEqual(t, metricValue(t, after, "cmpool_errors_total", `class="22"`), 1.0)
	require.Equal(t, 5.0, metricValue(t, after, "cmpool_servers_max", `database="postgres"`))
	require.Equal(t, 1.0, metricValue(t, after, "cmpool_clients_active", `database="postgres"`))
	metricValue(t, after, "cmpool_clients_waiting", `database="postgres"`)
	metricValue(t, after, "cmpool_client_wait_seconds_bucket")
	metricValue(t, after, "cmpool_transaction_duration_seconds_bucket")
	metricValue(t, after, "process_resident_memory_bytes")

	// SIGHUP re-reads the file.
	writeConfig(t, cfgPath, c, "default_pool_size = 3\n")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, body := httpGet(t, metricsURL)
		require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one), "clients stay connected through a reload")
		return strings.Contains(body, "cmpool_servers_max{") && metricValue(t, body, "cmpool_servers_max", `database="postgres"`) == 3
	}, 10*time.Second, 100*time.Millisecond, "logs:\n%s", p.logs.String())
	require.Contains(t, p.logs.String(), "configuration reloaded")

	// A broken file is refused, and the configuration in force stays.
	require.NoError(t, os.WriteFile(cfgPath, []byte("default_pool_size = -1\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(p.logs.String(), "reload failed") }, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, conn.QueryRow(ctx, "select 1").Scan(&one))
}

func TestBinarySIGTERMDrain(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 60*time.Second)
	cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
	writeConfig(t, cfgPath, c, "shutdown_timeout = \"20s\"\n")
	p := startBinary(t, cfgPath, freeAddr(t), freeAddr(t))

	inTx := connect(t, p.url("postgres", "postgres"), pgx.QueryExecModeExec)
	idle := connect(t, p.url("postgres", "postgres"), pgx.QueryExecModeExec)
	_, err := inTx.Exec(ctx, "begin")
	require.NoError(t, err)
	var n int
	require.NoError(t, inTx.QueryRow(ctx, "select 1").Scan(&n))
	// A client idle for under a second still gets to start a transaction during a drain
	// (TestRollingRestart relies on it); this one has been idle for longer.
	time.Sleep(1200 * time.Millisecond)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		code, _ := httpGet(t, "http://"+p.metrics+"/readyz")
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 20*time.Millisecond, "/readyz still ready while draining")
	code, _ := httpGet(t, "http://"+p.metrics+"/healthz")
	require.Equal(t, http.StatusOK, code, "a draining process is alive")

	// New connections are refused.
	require.Eventually(t, func() bool {
		conn, err := pgx.Connect(ctx, p.url("postgres", "postgres"))
		if err == nil {
			conn.Close(ctx)
		}
		return err != nil
	}, 5*time.Second, 20*time.Millisecond)
	// The idle client is told to go, with 57P01.
	err = idle.QueryRow(ctx, "select 1").Scan(&n)
	require.Error(t, err)
	// The transaction in flight completes.
	require.NoError(t, inTx.QueryRow(ctx, "select 2").Scan(&n))
	_, err = inTx.Exec(ctx, "commit")
	require.NoError(t, err)
	select {
	case <-p.exited:
		require.NoError(t, p.err, "a clean drain exits 0")
	case <-time.After(20 * time.Second):
		t.Fatalf("cmpool did not exit after its last transaction:\n%s", p.logs.String())
	}
	require.Contains(t, p.logs.String(), "shut down cleanly")
}

// TestRollingRestart runs pgbench (a new connection per transaction) against one port
// while a second cmpool starts on it and the first drains: no transaction fails.
func TestRollingRestart(t *testing.T) {
	c := sharedCluster(t)
	if os.Geteuid() == 0 {
		// With SO_REUSEPORT, connections still queued on a closing listener would be reset;
		// this migrates them to the other listener (Linux 5.14+). docs/operations.md.
		_ = os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte("1"), 0o644)
	}
	out, err := exec.Command(pgTool(t, "pgbench"), "-i", "-q", "-s", "1", c.Primary.URL("postgres", "")).CombinedOutput()
	require.NoError(t, err, "%s", out)

	cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
	writeConfig(t, cfgPath, c, "shutdown_timeout = \"20s\"\n")
	addr := freeAddr(t)
	old := startBinary(t, cfgPath, addr, freeAddr(t))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bench := exec.CommandContext(ctx, pgTool(t, "pgbench"), "-n", "-S", "-C", "-c", "4", "-j", "2", "-T", "8",
		old.url("postgres", "postgres"))
	var benchOut syncBuffer
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	require.NoError(t, bench.Start())

	time.Sleep(2 * time.Second)
	startBinary(t, cfgPath, addr, freeAddr(t)) // the new version, on the same port
	time.Sleep(time.Second)
	require.NoError(t, old.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-old.exited:
		require.NoError(t, old.err, "the old process drains cleanly")
	case <-time.After(25 * time.Second):
		t.Fatal("the old process did not exit")
	}

	err = bench.Wait()
	out2 := benchOut.String()
	require.NoError(t, err, "pgbench failed during the rolling restart:\n%s", out2)
	m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(out2)
	if m != nil {
		require.Equal(t, "0", m[1], "%s", out2)
	}
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(out2)
	require.NotNil(t, processed, "%s", out2)
	require.NotEqual(t, "0", processed[1])
	require.NotContains(t, out2, "aborted", "%s", out2)
	t.Logf("rolling restart: %s transactions, 0 failed", processed[1])
}

// TestReadyFollowsThePrimary: Server.Ready (the binary's /readyz) fails while the primary
// is down and recovers with it, and fails for good once shutdown begins.
func TestReadyFollowsThePrimary(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{})
	p := integration.StartProxy(t, c, pool.Config{})
	ctx := ctxT(t, 60*time.Second)
	require.NoError(t, p.Server.Ready(ctx))

	require.NoError(t, c.StopNode(c.Primary))
	require.Eventually(t, func() bool { return p.Server.Ready(ctx) != nil }, 10*time.Second, 200*time.Millisecond,
		"ready with the primary down")
	require.ErrorContains(t, p.Server.Ready(ctx), "primary unreachable")

	require.NoError(t, c.StartNode(ctx, c.Primary))
	require.Eventually(t, func() bool { return p.Server.Ready(ctx) == nil }, 20*time.Second, 200*time.Millisecond,
		"not ready again after the primary came back")

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = p.Server.Shutdown(sctx) }()
	require.Eventually(t, func() bool { return errors.Is(p.Server.Ready(ctx), pool.ErrServerClosed) }, 5*time.Second, 20*time.Millisecond)
}
