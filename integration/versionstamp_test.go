package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestVersionStamp: a binary whose version is stamped at build time, with -X main.version
// (as release builds and docs/deploy/Dockerfile do) or with -X on pool.Version, reports it in
// `cmpool version` and in the admin console's SHOW VERSION.
func TestVersionStamp(t *testing.T) {
	c := sharedCluster(t)
	for _, variable := range []string{"main.version", "github.com/cmlite/cmpool/pool.Version"} {
		t.Run(variable, func(t *testing.T) {
			const stamp = "9.9.9-stamped"
			bin := filepath.Join(t.TempDir(), "cmpool")
			out, err := exec.Command("go", "build", "-ldflags", "-X "+variable+"="+stamp, "-o", bin, "github.com/cmlite/cmpool/cmd/cmpool").CombinedOutput()
			require.NoError(t, err, "go build: %s", out)
			out, err = exec.Command(bin, "version").Output()
			require.NoError(t, err)
			require.Equal(t, "cmpool "+stamp+"\n", string(out))

			cfgPath := filepath.Join(t.TempDir(), "cmpool.toml")
			writeConfig(t, cfgPath, c, "")
			addr := freeAddr(t)
			cmd := exec.Command(bin, "--config", cfgPath, "--listen", addr, "--metrics-listen", freeAddr(t))
			cmd.Env = append(os.Environ(), "DATABASE_URL=", "REPLICA_URLS=")
			logs := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = logs, logs
			require.NoError(t, cmd.Start())
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGINT)
				_ = cmd.Wait()
			})
			cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://postgres@%s/cmpool?sslmode=disable", addr))
			require.NoError(t, err)
			cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
			var console *pgx.Conn
			require.Eventually(t, func() bool {
				console, err = pgx.ConnectConfig(t.Context(), cfg)
				return err == nil
			}, 20*time.Second, 50*time.Millisecond, "cmpool does not accept connections:\n%s", logs.String())
			t.Cleanup(func() { _ = console.Close(context.Background()) })
			_, _, rows := show(t, console, "SHOW VERSION")
			require.Equal(t, [][]string{{"cmpool " + stamp}}, rows)
		})
	}
}
