package integration_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestListenNotifyDrivers: psycopg2 (poll() and conn.notifies) and node-postgres
// (on('notification')) listen on two channels through cmpool in transaction mode, on a
// pool of 2. Notifications 1..n are sent on both channels from other clients, the
// listener's server connection is killed, and once it is back n+1..2n follow. Each driver
// must get every one of them, once, in order per channel, and the NOTICE that
// notifications may have been lost while the listener was away.
func TestListenNotifyDrivers(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	cases := []struct {
		name string
		cmd  func(t *testing.T, channels ...string) *exec.Cmd
	}{
		{"psycopg2", func(t *testing.T, channels ...string) *exec.Cmd {
			return psycopg2Command(t, "psycopg2_notify.py", append([]string{p.URL("", "")}, channels...)...)
		}},
		{"node-pg", func(t *testing.T, channels ...string) *exec.Cmd {
			return nodePgCommand(t, "notify.js", append([]string{p.URL("", "")}, channels...)...)
		}},
	}
	for _, dc := range cases {
		t.Run(dc.name, func(t *testing.T) {
			ctx := ctxT(t, 3*time.Minute)
			tag := strings.ReplaceAll(dc.name, "-", "_")
			chA, chB := "drv_"+tag+"_a", "drv_"+tag+"_b"
			cmd := dc.cmd(t, chA, chB)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

			// The listener's output, line by line.
			var mu sync.Mutex
			var lines []string
			readDone := make(chan struct{})
			go func() {
				defer close(readDone)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					mu.Lock()
					lines = append(lines, sc.Text())
					mu.Unlock()
				}
			}()
			saw := func(line string) bool {
				mu.Lock()
				defer mu.Unlock()
				for _, l := range lines {
					if l == line {
						return true
					}
				}
				return false
			}
			output := func() string {
				mu.Lock()
				defer mu.Unlock()
				return strings.Join(lines, "\n")
			}
			require.Eventually(t, func() bool { return saw("READY") }, time.Minute, 20*time.Millisecond, "the listener did not start:\n%s", output())

			// Senders: other clients of the same pool, each NOTIFY its own transaction.
			const n = 50
			s1 := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
			s2 := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
			send := func(from, to int) {
				for i := from; i <= to; i++ {
					_, err := s1.Exec(ctx, fmt.Sprintf("NOTIFY %s, '%d'", chA, i))
					require.NoError(t, err)
					_, err = s2.Exec(ctx, "SELECT pg_notify($1, $2)", chB, strconv.Itoa(i))
					require.NoError(t, err)
				}
			}
			send(1, n)
			require.Eventually(t, func() bool { return saw(fmt.Sprintf("GOT %s %d", chA, n)) && saw(fmt.Sprintf("GOT %s %d", chB, n)) },
				time.Minute, 20*time.Millisecond, "the first notifications did not arrive:\n%s", output())

			// The listener's server connection dies; probes until it is back.
			d := direct(t, c)
			var killed bool
			require.NoError(t, d.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE application_name = 'cmpool listener' AND datname = current_database()`).Scan(&killed))
			require.True(t, killed)
			back := false
			for i := 0; !back && ctx.Err() == nil; i++ {
				probe := fmt.Sprintf("probe%d", i)
				_, err := s1.Exec(ctx, fmt.Sprintf("NOTIFY %s, '%s'", chA, probe))
				require.NoError(t, err)
				back = eventually(500*time.Millisecond, func() bool { return saw("GOT " + chA + " " + probe) })
			}
			require.True(t, back, "the listener did not come back:\n%s", output())
			send(n+1, 2*n)
			_, err = s1.Exec(ctx, fmt.Sprintf("NOTIFY %s, 'end'; NOTIFY %s, 'end'", chA, chB))
			require.NoError(t, err)

			waitErr := make(chan error, 1)
			go func() { <-readDone; waitErr <- cmd.Wait() }()
			select {
			case err := <-waitErr:
				require.NoError(t, err, "the listener failed:\n%s", output())
			case <-ctx.Done():
				t.Fatalf("the listener did not finish:\n%s", output())
			}
			out := output()
			require.True(t, strings.HasSuffix(out, "NOTIFY-OK"), "output:\n%s", out)

			// Per channel: 1..2n, each once, in order (probes aside).
			got := map[string][]int{}
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) != 3 || f[0] != "GOT" || f[2] == "end" || strings.HasPrefix(f[2], "probe") {
					continue
				}
				v, err := strconv.Atoi(f[2])
				require.NoError(t, err, "line %q", l)
				got[f[1]] = append(got[f[1]], v)
			}
			for _, ch := range []string{chA, chB} {
				want := make([]int, 2*n)
				for i := range want {
					want[i] = i + 1
				}
				require.Equal(t, want, got[ch], "notifications on %s", ch)
			}
			require.Contains(t, out, "may have been lost", "the driver is told notifications may have been lost")
		})
	}
}

// eventually reports whether cond became true within d, polling it.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
