package main

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "version", args: []string{"version"}, wantStdout: "cmpool " + version + "\n"},
		{name: "--version", args: []string{"--version"}, wantStdout: "cmpool " + version + "\n"},
		{name: "help", args: []string{"help"}, wantStdout: "--default-pool-size N  [DEFAULT_POOL_SIZE]"},
		{name: "-h", args: []string{"-h"}, wantStdout: "Usage:"},
		{name: "serve -h", args: []string{"serve", "-h"}, wantStdout: "Usage:"},
		{name: "unknown command", args: []string{"start"}, wantCode: 2, wantStderr: `unknown command "start"`},
		{name: "bad flag", args: []string{"serve", "--pool-mode", "x"}, wantCode: 2, wantStderr: `unknown pool mode "x"`},
		{name: "no primary", args: []string{"--listen", "127.0.0.1:0"}, wantCode: 1, wantStderr: "no primary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, envMap{}.get, &stdout, &stderr, make(chan os.Signal))
			require.Equal(t, tt.wantCode, code, "stderr: %s", stderr.String())
			require.Contains(t, stdout.String(), tt.wantStdout)
			require.Contains(t, stderr.String(), tt.wantStderr)
		})
	}
}

func TestHelpShowsLowercaseDefaults(t *testing.T) {
	var out bytes.Buffer
	printUsage(&out)
	require.Contains(t, out.String(), "(default info)")
	require.Contains(t, out.String(), "(default transaction)")
	require.Contains(t, out.String(), "(default 127.0.0.1:6432)")
}

func TestClientURL(t *testing.T) {
	tests := []struct {
		addr string
		want string
	}{
		{"127.0.0.1:6432", "postgres://postgres@127.0.0.1:6432/postgres?sslmode=disable"},
		{"0.0.0.0:7000", "postgres://postgres@127.0.0.1:7000/postgres?sslmode=disable"},
		{"[::]:7000", "postgres://postgres@127.0.0.1:7000/postgres?sslmode=disable"},
		{"[::1]:7000", "postgres://postgres@[::1]:7000/postgres?sslmode=disable"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			addr, err := net.ResolveTCPAddr("tcp", tt.addr)
			require.NoError(t, err)
			require.Equal(t, tt.want, clientURL(addr, "postgres", "postgres"))
		})
	}
}

func TestRedactURL(t *testing.T) {
	require.Equal(t, "postgres://u:xxxxx@h:5432/db", redactURL("postgres://u:secret@h:5432/db"))
	require.Equal(t, "postgres://u@h/db", redactURL("postgres://u@h/db"))
	require.Equal(t, "(not a URL)", redactURL("host=h password=secret"))
}

func TestMetricsHealthz(t *testing.T) {
	m, err := startMetrics("127.0.0.1:0", newMetrics(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(m.close)

	get := func(path string) (int, string) {
		url := "http://" + m.addr.String() + path
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok", body)
	code, _ = get("/readyz")
	require.Equal(t, http.StatusOK, code, "no server attached yet: nothing to be unready about")

	m.setDraining()
	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code, "a draining process is alive")
	code, body = get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "shutting down", body)
}

// TestCPUProfile: CMPOOL_CPUPROFILE writes a CPU profile (gzipped protobuf, what go build
// -pgo takes) until run returns; a path that cannot be created stops the start.
func TestCPUProfile(t *testing.T) {
	path := t.TempDir() + "/cpu.pprof"
	var stdout, stderr bytes.Buffer
	env := envMap{"CMPOOL_CPUPROFILE": path}
	code := run([]string{"--listen", "127.0.0.1:0"}, env.get, &stdout, &stderr, make(chan os.Signal))
	require.Equal(t, 1, code, "no primary: it stops after the profile started")
	require.Contains(t, stderr.String(), "writing a CPU profile")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(b), 2)
	require.Equal(t, []byte{0x1f, 0x8b}, b[:2], "a gzipped profile")

	stderr.Reset()
	env = envMap{"CMPOOL_CPUPROFILE": t.TempDir() + "/missing/cpu.pprof"}
	code = run([]string{"--listen", "127.0.0.1:0", "--primary", "postgres://127.0.0.1:1/x"}, env.get, &stdout, &stderr, make(chan os.Signal))
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "CMPOOL_CPUPROFILE")
}
