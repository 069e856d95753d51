package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cmpoolFlags are the cmpool flags besides --listen and --primary; the report prints them.
// Authentication is trust, as on PgBouncer's side (pgbouncerSettings): both listen on
// loopback, in front of a throwaway cluster.
var cmpoolFlags = []string{"--pool-mode", "transaction", "--default-pool-size", "20", "--max-client-conn", "60000", "--auth-type", "trust", "--log-level", "warn"}

// buildCmpool builds ./cmd/cmpool of the module in root into dir and returns the binary's path,
// so that cmpool runs as a separate process, as PgBouncer does.
func buildCmpool(ctx context.Context, root, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "cmpool")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cmpool")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/cmpool: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// startCmpool starts the cmpool binary in front of the primary on pgPort and, when replicaPort
// is not 0, the replica on replicaPort; with ownSession, in a session of its own (-sessions);
// with configFile, reading it (-cmpool-config).
func startCmpool(ctx context.Context, bin, dir string, pgPort, replicaPort int, ownSession bool, configFile string) (*proxyProcess, error) {
	if configFile != "" {
		abs, err := filepath.Abs(configFile)
		if err != nil {
			return nil, err
		}
		configFile = abs
	}
	return startProxy(ctx, "cmpool", filepath.Join(dir, "cmpool.log"), "bench", ownSession, func(port int) *exec.Cmd {
		args := append([]string{"--listen", "127.0.0.1:" + strconv.Itoa(port)}, serverFlags(pgPort, replicaPort)...)
		args = append(args, cmpoolFlags...)
		if configFile != "" {
			args = append(args, "--config", configFile)
		}
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		return cmd
	})
}

// serverFlags returns cmpool's --primary flag and, when replicaPort is not 0, its --replica flag.
func serverFlags(pgPort, replicaPort int) []string {
	flags := []string{"--primary", loopbackURL(pgPort)}
	if replicaPort != 0 {
		flags = append(flags, "--replica", loopbackURL(replicaPort))
	}
	return flags
}

// loopbackURL is the URL cmpool gets for a server on a loopback port.
func loopbackURL(port int) string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable"
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == "/dev/null" {
		return "", fmt.Errorf("not inside the cmpool module: run from its directory")
	}
	return filepath.Dir(gomod), nil
}

// gitCommit describes the commit of the module in root, marked "+dirty" when the sources the
// cmpool binary is built from have changes that are not committed.
func gitCommit(ctx context.Context, root string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--",
		"go.mod", "go.sum", "cmd", "pool", "protocol", "router").Output()
	if err == nil && len(strings.TrimSpace(string(status))) > 0 {
		commit += "+dirty"
	}
	return commit
}
