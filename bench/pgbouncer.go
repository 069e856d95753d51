package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgbouncerSettings are the [pgbouncer] settings besides the listen port and the file paths; the
// report prints them.
const pgbouncerSettings = `pool_mode = transaction
default_pool_size = 20
max_client_conn = 60000
auth_type = trust
log_connections = 0
log_disconnections = 0
`

// findPgbouncer returns the pgbouncer executable: Debian's /usr/sbin/pgbouncer, else from $PATH.
func findPgbouncer() (string, error) {
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	p, err := exec.LookPath("pgbouncer")
	if err != nil {
		return "", fmt.Errorf("pgbouncer not found in /usr/sbin or on $PATH: %w", err)
	}
	return p, nil
}

// pgbouncerVersion returns the first line of `pgbouncer --version`.
func pgbouncerVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// startPgbouncer writes a configuration into dir that pools database bench of the server on
// pgPort, and starts PgBouncer with it (in a session of its own with ownSession). PgBouncer
// refuses to run as root, so when running as root it runs as the postgres OS user, which then
// owns dir.
func startPgbouncer(ctx context.Context, bin, dir string, pgPort int, ownSession bool) (*proxyProcess, error) {
	runAs, err := pgbouncerCredential()
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "pgbouncer.log")
	authPath := filepath.Join(dir, "userlist.txt")
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	// writeIni writes the configuration for listening on port.
	writeIni := func(port int) error {
		conf := fmt.Sprintf("[databases]\nbench = host=127.0.0.1 port=%d dbname=bench\n\n[pgbouncer]\n"+
			"listen_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\nauth_file = %s\nlogfile = %s\n%s",
			pgPort, port, authPath, logPath, pgbouncerSettings)
		return os.WriteFile(iniPath, []byte(conf), 0o644)
	}
	if err := os.WriteFile(authPath, []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		return nil, err
	}
	if err := writeIni(0); err != nil {
		return nil, err
	}
	if runAs != nil {
		for _, path := range []string{dir, authPath, logPath, iniPath} {
			if err := os.Chown(path, int(runAs.Uid), int(runAs.Gid)); err != nil {
				return nil, err
			}
		}
	}
	var iniErr error
	p, err := startProxy(ctx, "pgbouncer", filepath.Join(dir, "pgbouncer.out"), "bench", ownSession, func(port int) *exec.Cmd {
		if err := writeIni(port); err != nil {
			iniErr = err
		}
		cmd := exec.Command(bin, iniPath)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: runAs}
		return cmd
	})
	if iniErr != nil {
		return nil, iniErr
	}
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, tailOf(logPath))
	}
	return p, nil
}

// knownLimitation returns why a failed run is an expected limitation of PgBouncer, or "".
// PgBouncer before 1.21 keeps no track of protocol-level prepared statements in transaction
// mode, so pgbench -M prepared finds statements of other clients on its server connection
// ("prepared statement "P_0" already exists") or misses its own ("does not exist").
func knownLimitation(target, workload, version, output string) string {
	if target != targetPgbouncer || workload != "select-prepared" || !strings.Contains(output, `prepared statement "`) {
		return ""
	}
	var major, minor int
	if _, err := fmt.Sscanf(version, "PgBouncer %d.%d", &major, &minor); err != nil || major > 1 || minor >= 21 {
		return ""
	}
	return fmt.Sprintf("%s does not support prepared statements in transaction mode (max_prepared_statements came in 1.21)", version)
}

// pgbouncerCredential returns the postgres OS user's credential when running as root, else nil.
func pgbouncerCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs an OS user postgres to run pgbouncer: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("uid/gid of postgres: %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// tailOf returns the last lines of a log file, formatted to be appended to an error message.
func tailOf(path string) string {
	p := proxyProcess{logPath: path}
	return p.logTail()
}
