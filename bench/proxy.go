package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/integration"
)

const (
	readyTimeout = 30 * time.Second // bound on the wait for a proxy to serve queries
	stopTimeout  = 10 * time.Second // bound on a proxy's shutdown after SIGTERM
	startTries   = 3                // a proxy that exits at once (port clash) is retried on a new port
	clockTicks   = 100              // CLK_TCK: units of utime and stime in /proc/PID/stat
)

// proxyProcess is a pooler running as a child process.
type proxyProcess struct {
	name    string // "pgbouncer" or "cmpool"
	addr    string // host:port it listens on
	logPath string // its stdout and stderr (and, for PgBouncer, its logfile)
	cmd     *exec.Cmd
	// ownSession starts it in a session of its own, and so its own process group and,
	// with the kernel's autogroup scheduling, its own CPU scheduling group (-sessions).
	ownSession bool
	done       chan struct{} // closed when the process has exited
	waitErr    error         // valid after done is closed
}

// startProxy starts the command that newCmd returns for a free loopback port, and waits until a
// query on database db through it succeeds. A process that exits before that is retried on
// another port, in case the port was taken meanwhile. With ownSession the process starts a
// session of its own (-sessions).
func startProxy(ctx context.Context, name, logPath, db string, ownSession bool, newCmd func(port int) *exec.Cmd) (*proxyProcess, error) {
	var lastErr error
	for range startTries {
		port, err := integration.FreePort()
		if err != nil {
			return nil, err
		}
		p := &proxyProcess{name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), logPath: logPath, cmd: newCmd(port), ownSession: ownSession, done: make(chan struct{})}
		if err := p.start(); err != nil {
			return nil, err
		}
		lastErr = p.waitReady(ctx, db)
		if lastErr == nil {
			return p, nil
		}
		_ = p.stop()
		if !p.exited() || ctx.Err() != nil {
			break // running but not serving: another port will not help
		}
	}
	return nil, lastErr
}

// start starts the process in its own process group (or session, with ownSession), so that a
// terminal's Ctrl-C reaches only the benchmark, which then stops it.
func (p *proxyProcess) start() error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.Env = clientEnv()
	if p.cmd.SysProcAttr == nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if p.ownSession {
		p.cmd.SysProcAttr.Setsid = true // a session leader leads its process group too
	} else {
		p.cmd.SysProcAttr.Setpgid = true
	}
	p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return nil
}

// url returns a connection URL for database db through the proxy.
func (p *proxyProcess) url(db string) string {
	return "postgres://postgres@" + p.addr + "/" + db + "?sslmode=disable"
}

// waitReady waits until a connection to db through the proxy runs a query.
func (p *proxyProcess) waitReady(ctx context.Context, db string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr error
	for {
		if p.exited() {
			return fmt.Errorf("%s exited before serving queries: %v%s", p.name, p.waitErr, p.logTail())
		}
		if lastErr = ping(ctx, p.url(db)); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not serve queries on %s: %w (last: %w)%s", p.name, p.addr, ctx.Err(), lastErr, p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ping connects to url and runs SELECT 1, each attempt bounded to a few seconds.
func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
	return err
}

// exited reports whether the process has ended.
func (p *proxyProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL if the process is still there after stopTimeout.
func (p *proxyProcess) stop() error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
	}
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, stopTimeout)
}

// cpuTicks returns the process's user plus system CPU time in clock ticks, from fields 14 and 15
// of /proc/PID/stat.
func (p *proxyProcess) cpuTicks() (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(data))
}

// parseStatCPU returns utime+stime from the text of /proc/PID/stat. The command name (field 2)
// is in parentheses and may contain spaces, so fields are counted after its closing parenthesis.
func parseStatCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	fields := strings.Fields(stat[i+1:]) // fields[0] is field 3 (state)
	if len(fields) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed /proc/PID/stat: %w", err)
	}
	return utime + stime, nil
}

// log returns what the process has written to its log so far.
func (p *proxyProcess) log() string {
	data, _ := os.ReadFile(p.logPath)
	return string(data)
}

// logTail returns the end of the process's log, formatted to be appended to an error message.
func (p *proxyProcess) logTail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxBytes = 4 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		_, _ = f.Seek(fi.Size()-maxBytes, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return ""
	}
	return "\n--- tail of " + p.logPath + " ---\n" + string(data)
}
