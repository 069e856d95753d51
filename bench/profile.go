package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/cmlite/cmpool/pool"
)

const (
	profileClients  = 20       // pgbench -c of the profiled run
	profileMemRate  = 16 << 10 // runtime.MemProfileRate while profiling: one sample per 16 KiB allocated
	profileTopNodes = "15"     // functions in each top list
	profileWarmup   = time.Second
)

// profileResult is what the profiled run measured and where the profiles are.
type profileResult struct {
	Dir     string         // directory of cpu.pprof, allocs-base.pprof and allocs.pprof
	Summary pgbenchSummary // of the profiled run
	Tops    []profileTop   // go tool pprof -top listings
	Err     error
}

// profileTop is one `go tool pprof -top` listing.
type profileTop struct {
	Title string
	Args  []string // go tool pprof arguments before the profile files
	Text  string
}

// profileCmpool serves cmpool in this process, configured like the cmpool binary under test,
// runs pgbench's -profile-workload with 20 clients through it for d, and writes CPU and allocation profiles of
// that run into dir. The allocation profile is taken before and after the run; the listings
// show the difference.
func profileCmpool(ctx context.Context, b *benchmark, primaryPort, replicaPort int, dir string, d time.Duration) profileResult {
	res := profileResult{Dir: dir}
	res.Err = func() error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		cfg := pool.Config{
			Primary:         loopbackURL(primaryPort),
			PoolMode:        pool.ModeTransaction,
			DefaultPoolSize: 20,
			MaxClientConn:   60000,
			AuthType:        pool.AuthTrust, // on loopback, as cmpoolFlags
			Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		}
		if replicaPort != 0 {
			cfg.Replicas = []string{loopbackURL(replicaPort)}
		}
		srv, err := pool.New(cfg)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			_ = srv.Shutdown(sctx)
			if err := <-served; err != nil && !errors.Is(err, pool.ErrServerClosed) {
				logf("in-process cmpool: %v", err)
			}
		}()
		url := "postgres://postgres@" + ln.Addr().String() + "/bench?sslmode=disable"
		run := pgbenchRun{Bin: b.pgbench, URL: url, Workload: b.cfg.profileWL, Clients: profileClients, Jobs: b.cfg.jobs} // no per-transaction logs: parsing them would show in the profiles

		run.Duration = profileWarmup
		if _, _, out, err := run.run(ctx); err != nil {
			return fmt.Errorf("warm-up: %w\n%s", err, abbreviate(out, 2000))
		}
		if err := writeHeapProfile(filepath.Join(dir, "allocs-base.pprof")); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		run.Duration = d
		if writes(run.Workload) {
			if err := resetTables(ctx, b.admin); err != nil {
				return err
			}
		}
		sum, _, out, err := run.run(ctx)
		pprof.StopCPUProfile()
		if err != nil {
			return fmt.Errorf("%w\n%s", err, abbreviate(out, 2000))
		}
		res.Summary = sum
		if err := writeHeapProfile(filepath.Join(dir, "allocs.pprof")); err != nil {
			return err
		}
		return f.Close()
	}()
	if res.Err != nil {
		return res
	}
	cpu := []string{filepath.Join(dir, "cpu.pprof")}
	// Only allocations under cmpool's own frames: not those of writing the profiles.
	allocs := []string{"-focus=github.com/cmlite/cmpool/", "-base", filepath.Join(dir, "allocs-base.pprof"), filepath.Join(dir, "allocs.pprof")}
	for _, top := range []profileTop{
		{Title: "CPU, by flat time", Args: []string{"-top", "-nodecount=" + profileTopNodes}},
		{Title: "CPU, by cumulative time", Args: []string{"-top", "-cum", "-nodecount=" + profileTopNodes}},
		{Title: "Allocations, by bytes (flat)", Args: []string{"-top", "-sample_index=alloc_space", "-nodecount=" + profileTopNodes}},
		{Title: "Allocations, by count, per source line (flat)", Args: []string{"-top", "-lines", "-sample_index=alloc_objects", "-nodecount=" + profileTopNodes}},
	} {
		files := cpu
		if strings.HasPrefix(top.Title, "Allocations") {
			files = allocs
		}
		text, err := pprofTop(ctx, append(top.Args, files...), b.root)
		if err != nil {
			res.Err = err
			return res
		}
		top.Text = text
		res.Tops = append(res.Tops, top)
	}
	return res
}

// writeHeapProfile writes the allocation profile (all allocations since the start) after a GC.
func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pprofTop runs go tool pprof with args and returns its listing without the header lines
// that name the files, and with source paths relative to the module root.
func pprofTop(ctx context.Context, args []string, root string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("go tool pprof %s: %w", strings.Join(args, " "), err)
	}
	var keep []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Time:") {
			continue
		}
		line = strings.ReplaceAll(line, root+string(filepath.Separator), "")
		keep = append(keep, strings.TrimRight(line, "\n"))
	}
	return strings.Join(keep, "\n"), nil
}
