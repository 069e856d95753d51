package integration_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// peerProcess is the cmpool binary running in the background.
type peerProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	done chan error
}

func (p *peerProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// buildCmpool builds the binary once per test.
func buildCmpool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cmpool")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/cmlite/cmpool/cmd/cmpool").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// startCmpool runs the binary with a config file and waits until it logs that it serves.
func startCmpool(t *testing.T, bin, config string) *peerProcess {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cmpool.toml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
	p := &peerProcess{cmd: exec.Command(bin, "--config", path), done: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		r := bufio.NewReader(stderr)
		for {
			line, err := r.ReadString('\n')
			p.mu.Lock()
			p.logs.WriteString(line)
			p.mu.Unlock()
			if err != nil {
				_, _ = io.Copy(io.Discard, r)
				break
			}
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	require.Eventually(t, func() bool { return strings.Contains(p.log(), "msg=listening") },
		20*time.Second, 20*time.Millisecond, "cmpool did not start:\n%s", p.log())
	return p
}

// peerOf returns the peer id a cmpool cancel key carries (bits 16-30 of its pid).
func peerOf(pid uint32) int { return int(pid >> 16) }

// sendCancel sends a CancelRequest for conn's key to addr, as libpq does.
func sendCancel(t *testing.T, addr string, conn *pgconn.PgConn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	b, err := (&pgproto3.CancelRequest{ProcessID: conn.PID(), SecretKey: conn.SecretKey()}).Encode(nil)
	require.NoError(t, err)
	_, err = c.Write(b)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Read(make([]byte, 1)) // cmpool closes once the cancel is handled
}

// TestTwoInstancesOnePort runs the cmpool binary twice on one port (SO_REUSEPORT), as peers:
// clients are spread over both, a cancel request sent to the other instance cancels the
// query, and with one instance drained (SIGTERM) the other takes every new client.
func TestTwoInstancesOnePort(t *testing.T) {
	c := sharedCluster(t)
	bin := buildCmpool(t)
	shared := freeAddr(t)
	peerAddrs := []string{freeAddr(t), freeAddr(t)}
	var procs []*peerProcess
	for i := range 2 {
		procs = append(procs, startCmpool(t, bin, fmt.Sprintf(`
listen = %q
primary = %q
auth_type = "trust" # loopback test cluster
so_reuseport = true
peer_id = %d
peer_listen = %q
log_level = "debug"

[peers]
1 = %q
2 = %q
`, shared, c.Primary.URL("", ""), i+1, peerAddrs[i], peerAddrs[0], peerAddrs[1])))
	}
	url := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", shared)
	ctx := ctxT(t, 2*time.Minute)

	// The kernel spreads connections over both instances; the cancel key names the one.
	byPeer := map[int][]*pgconn.PgConn{}
	for range 40 {
		conn, err := pgconn.Connect(ctx, url)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		byPeer[peerOf(conn.PID())] = append(byPeer[peerOf(conn.PID())], conn)
	}
	require.Len(t, byPeer, 2, "every connection went to one instance")
	require.NotEmpty(t, byPeer[1])
	require.NotEmpty(t, byPeer[2])

	// A cancel for instance 1's client, sent to instance 2, cancels the query: instance 2
	// forwards it to its peer.
	for _, target := range []struct {
		conn *pgconn.PgConn
		via  string
	}{
		{byPeer[1][0], peerAddrs[1]},
		{byPeer[2][0], peerAddrs[0]},
		{byPeer[1][1], shared}, // whichever instance the kernel picks
	} {
		errc := make(chan error, 1)
		go func() {
			_, err := target.conn.Exec(ctx, "select pg_sleep(60)").ReadAll()
			errc <- err
		}()
		// Wait until the query runs on the primary.
		admin := direct(t, c)
		require.Eventually(t, func() bool {
			var n int
			return admin.QueryRow(ctx, "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'").Scan(&n) == nil && n == 1
		}, 20*time.Second, 20*time.Millisecond)
		start := time.Now()
		sendCancel(t, target.via, target.conn)
		select {
		case err := <-errc:
			require.Equal(t, "57014", pgCode(err), "got %v", err)
			require.Less(t, time.Since(start), 20*time.Second)
		case <-time.After(30 * time.Second):
			t.Fatalf("the cancel sent via %s did not reach the query of peer %d;\ninstance 1:\n%s\ninstance 2:\n%s",
				target.via, peerOf(target.conn.PID()), procs[0].log(), procs[1].log())
		}
		require.NoError(t, admin.Close(ctx))
	}
	require.Contains(t, procs[1].log()+procs[0].log(), "cancel request forwarded to its peer")

	// Rolling update: instance 1 drains on SIGTERM; new clients all reach instance 2.
	for _, conn := range byPeer[1] {
		require.NoError(t, conn.Close(ctx))
	}
	require.NoError(t, procs[0].cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-procs[0].done:
		procs[0].done <- err // for the cleanup
		require.NoError(t, err, "instance 1 did not exit cleanly:\n%s", procs[0].log())
	case <-time.After(40 * time.Second):
		t.Fatalf("instance 1 did not drain:\n%s", procs[0].log())
	}
	for range 20 {
		conn, err := pgconn.Connect(ctx, url)
		require.NoError(t, err, "a client during the rolling update")
		require.Equal(t, 2, peerOf(conn.PID()))
		_, err = conn.Exec(ctx, "select 1").ReadAll()
		require.NoError(t, err)
		require.NoError(t, conn.Close(ctx))
	}
}

// TestPeersReload changes [peers] with a reload: a cancel request for another instance's
// client is dropped while that instance has no [peers] entry, and forwarded once a reload
// adds it. A changed peer_id is left as it was.
func TestPeersReload(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, time.Minute)
	one := integration.StartProxy(t, c, pool.Config{PeerID: 1})
	twoCfg := pool.Config{Primary: c.Primary.URL("", ""), PeerID: 2}
	two := integration.StartProxy(t, c, twoCfg)

	conn, err := pgconn.Connect(ctx, one.URL("", ""))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	require.Equal(t, 1, peerOf(conn.PID()))
	admin := direct(t, c)
	sleep := func() chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := conn.Exec(ctx, "select pg_sleep(30)").ReadAll()
			errc <- err
		}()
		require.Eventually(t, func() bool {
			var n int
			return admin.QueryRow(ctx, "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'").Scan(&n) == nil && n == 1
		}, 20*time.Second, 20*time.Millisecond)
		return errc
	}

	// Instance 2 knows no peers: the cancel is dropped, and the query runs on.
	errc := sleep()
	sendCancel(t, two.Addr, conn)
	select {
	case err := <-errc:
		t.Fatalf("the query ended with no peer to forward the cancel to: %v", err)
	case <-time.After(time.Second):
	}
	_, err = admin.Exec(ctx, "select pg_cancel_backend(pid) from pg_stat_activity where query = 'select pg_sleep(30)'")
	require.NoError(t, err)
	require.Equal(t, "57014", pgCode(<-errc))

	// A reload gives instance 2 its peer, and tries to change its peer id.
	twoCfg.Peers = map[int]string{1: one.Addr, 2: two.Addr}
	twoCfg.PeerID = 3
	require.NoError(t, two.Server.Reload(integration.WithTestAuth(twoCfg)))
	errc = sleep()
	sendCancel(t, two.Addr, conn)
	select {
	case err := <-errc:
		require.Equal(t, "57014", pgCode(err), "got %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the cancel was not forwarded after the reload")
	}
	other, err := pgconn.Connect(ctx, two.URL("", ""))
	require.NoError(t, err)
	require.Equal(t, 2, peerOf(other.PID()), "peer_id needs a restart")
	require.NoError(t, other.Close(ctx))
}
