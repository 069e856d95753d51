package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/cmlite/cmpool/pool"
)

// This file holds where and how the process runs, as PgBouncer's settings say: the
// listeners (listen_addr, listen_port, unix_socket_dir, unix_socket_mode,
// unix_socket_group), pidfile and logfile.

// openListeners opens a TCP listener for each address of s.Listen (comma-separated) and,
// with unix_socket_dir, the Unix socket <dir>/.s.PGSQL.<port>, <port> being the first
// address's port, where psql and libpq look for it.
func openListeners(s settings) ([]net.Listener, error) {
	var lns []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	addrs := strings.Split(s.Listen, ",")
	for _, addr := range addrs {
		ln, err := pool.Listen(context.Background(), strings.TrimSpace(addr), s.ReusePort)
		if err != nil {
			return fail(err)
		}
		lns = append(lns, ln)
	}
	if s.UnixSocketDir == "" {
		return lns, nil
	}
	_, port, err := net.SplitHostPort(lns[0].Addr().String())
	if err != nil {
		return fail(err)
	}
	ln, err := listenUnix(filepath.Join(s.UnixSocketDir, ".s.PGSQL."+port), s.UnixSocketMode, s.UnixSocketGroup)
	if err != nil {
		return fail(fmt.Errorf("unix_socket_dir: %w", err))
	}
	return append(lns, ln), nil
}

// listenUnix listens on the Unix socket path, replacing a stale socket file that no
// process answers on, and sets its mode (octal, default 0777) and group.
func listenUnix(path, mode, group string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	perm := os.FileMode(0o777)
	if mode != "" {
		n, err := strconv.ParseUint(mode, 8, 32)
		if err != nil || n > 0o777 {
			ln.Close()
			return nil, fmt.Errorf("unix_socket_mode %q is not an octal file mode", mode)
		}
		perm = os.FileMode(n)
	}
	if err := os.Chmod(path, perm); err != nil {
		ln.Close()
		return nil, err
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("unix_socket_group: %w", err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("unix_socket_group: %w", err)
		}
	}
	return ln, nil
}

// writePidFile writes this process's id to path, refusing to when the process named
// there is still running. The returned function removes the file.
func writePidFile(path string) (func(), error) {
	if data, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 && pid != os.Getpid() {
			if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
				return nil, fmt.Errorf("pidfile %s: process %d is still running", path, pid)
			}
		}
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pidfile: %w", err)
	}
	return func() { _ = os.Remove(path) }, nil
}

// logFile is the logfile: appended to, and reopened on SIGHUP so that logrotate can move
// it away.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	l := &logFile{path: path}
	if err := l.reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *logFile) reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// logWriter is where logs go: stderr, and the logfile as well when one is set.
func logWriter(stderr io.Writer, lf *logFile) io.Writer {
	if lf == nil {
		return stderr
	}
	return io.MultiWriter(stderr, lf)
}
