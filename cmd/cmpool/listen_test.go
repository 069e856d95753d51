package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOpenListeners(t *testing.T) {
	dir := t.TempDir()
	s := settings{Listen: "127.0.0.1:0, 127.0.0.2:0", UnixSocketDir: dir, UnixSocketMode: "0700"}
	lns, err := openListeners(s)
	require.NoError(t, err)
	require.Len(t, lns, 3)
	_, port, _ := net.SplitHostPort(lns[0].Addr().String())
	sock := filepath.Join(dir, ".s.PGSQL."+port)
	require.Equal(t, sock, lns[2].Addr().String())
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	c.Close()

	// A second process on the same socket is refused while the first listens.
	_, err = listenUnix(sock, "", "")
	require.ErrorContains(t, err, "another process is listening there")
	for _, ln := range lns {
		require.NoError(t, ln.Close())
	}
	_, err = os.Stat(sock)
	require.True(t, os.IsNotExist(err), "closing removes the socket file")

	// A stale socket file is replaced.
	stale := filepath.Join(dir, ".s.PGSQL.1")
	ln, err := net.Listen("unix", stale)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = listenUnix(stale, "0600", "")
	require.NoError(t, err)
	ln.Close()

	_, err = listenUnix(filepath.Join(dir, "x"), "0999", "")
	require.ErrorContains(t, err, "not an octal file mode")
	_, err = listenUnix(filepath.Join(dir, "y"), "", "no-such-group-here")
	require.ErrorContains(t, err, "unix_socket_group")
}

func TestPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cmpool.pid")
	remove, err := writePidFile(path)
	require.NoError(t, err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(os.Getpid()), strings.TrimSpace(string(data)))
	remove()
	_, err = os.Stat(path)
	require.True(t, os.IsNotExist(err))

	// A pidfile naming a live process (here the parent) is refused; a dead one is replaced.
	require.NoError(t, os.WriteFile(path, []byte(strconv.Itoa(os.Getppid())), 0o644))
	_, err = writePidFile(path)
	require.ErrorContains(t, err, "is still running")
	require.NoError(t, os.WriteFile(path, []byte("999999999\n"), 0o644))
	remove, err = writePidFile(path)
	require.NoError(t, err)
	remove()
}

func TestLogFileReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cmpool.log")
	lf, err := openLogFile(path)
	require.NoError(t, err)
	defer lf.Close()
	w := logWriter(&strings.Builder{}, lf)
	_, err = w.Write([]byte("one\n"))
	require.NoError(t, err)
	require.NoError(t, os.Rename(path, path+".1"))
	require.NoError(t, lf.reopen())
	_, err = w.Write([]byte("two\n"))
	require.NoError(t, err)
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	require.Equal(t, "one\n", string(old))
	require.Equal(t, "two\n", string(cur))
}

func TestLoadConfigTOMLPgBouncerKeys(t *testing.T) {
	path := writeConfig(t, `
unix_socket_dir = "/var/run/postgresql"
unix_socket_mode = "0770"
pidfile = "/run/cmpool.pid"
logfile = "/var/log/cmpool.log"
max_db_connections = 50
tcp_keepalive = false
tcp_user_timeout = "30s"
ignore_startup_parameters = "extra_float_digits"

[databases.app]
min_pool_size = 2
timezone = "UTC"

[users.bob]
pool_mode = "session"
max_user_connections = 4
`)
	s, err := loadConfig([]string{"--config", path}, envMap{}.get)
	require.NoError(t, err)
	require.Equal(t, "/var/run/postgresql", s.UnixSocketDir)
	require.Equal(t, "0770", s.UnixSocketMode)
	require.Equal(t, "/run/cmpool.pid", s.PidFile)
	require.Equal(t, "/var/log/cmpool.log", s.LogFile)
	cfg := s.poolConfig(nil)
	require.Equal(t, 50, cfg.MaxDBConnections)
	require.True(t, cfg.TCPKeepaliveOff)
	require.Equal(t, []string{"extra_float_digits"}, cfg.IgnoreStartupParameters)
	require.Equal(t, 2, cfg.Databases["app"].MinPoolSize)
	require.Equal(t, "UTC", cfg.Databases["app"].TimeZone)
	require.Equal(t, "session", string(cfg.Users["bob"].PoolMode))
	require.Equal(t, 4, cfg.Users["bob"].MaxUserConnections)
}
