package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/cmlite/cmpool/pool"
)

// fastShutdownTimeout bounds the shutdown on SIGINT: clients get 57P01 at once.
const fastShutdownTimeout = 0

// newLogger returns a logger on w at level, as text or as JSON (format "json").
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runServe runs the proxy until a signal and returns the exit code. reload re-reads the
// settings, for SIGHUP and the console's RELOAD.
func runServe(s settings, reload func() (settings, error), logger *slog.Logger, lf *logFile, sigs <-chan os.Signal) int {
	if s.ConfigFile != "" {
		logger.Info("read config file", "path", s.ConfigFile)
	}
	p, err := startProxy(s, reload, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	p.logFile = lf
	return p.wait(sigs)
}

// proxyServer is the part of *pool.Server that proxy drives; tests fake it.
type proxyServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Reload(pool.Config) error
}

// proxy is a running pool.Server and its metrics endpoint.
type proxy struct {
	srv       proxyServer
	addr      net.Addr       // where clients connect
	metrics   *metricsServer // nil when --metrics-listen is off
	served    chan error     // Serve's result; 1-buffered
	logger    *slog.Logger
	newConfig func() (pool.Config, error) // nil: nothing to reload from
	shutdown  time.Duration               // the graceful shutdown's bound
	logFile   *logFile                    // reopened on SIGHUP; nil when none
	pauseStop context.CancelFunc          // ends a SIGUSR1 pause's wait; nil when none
}

// startProxy builds the pool.Server, binds the listeners and starts serving. It listens
// itself rather than calling ListenAndServe, so that a bad address fails here, before
// anything is announced, and so that the bound address is known.
func startProxy(s settings, reload func() (settings, error), logger *slog.Logger) (*proxy, error) {
	var m *metrics
	if s.MetricsListen != "" {
		m = newMetrics()
	}
	configOf := func(s settings) pool.Config {
		cfg := s.poolConfig(logger)
		if m != nil {
			cfg.Observer = m
		}
		return cfg
	}
	var newConfig func() (pool.Config, error)
	if reload != nil {
		newConfig = func() (pool.Config, error) {
			ns, err := reload()
			if err != nil {
				return pool.Config{}, err
			}
			cfg := configOf(ns)
			cfg.LoadConfig = nil // set by the caller below
			return cfg, nil
		}
	}
	cfg := configOf(s)
	cfg.LoadConfig = newConfig
	srv, err := pool.New(cfg)
	if err != nil {
		return nil, err
	}
	lns, err := openListeners(s)
	if err != nil {
		return nil, err
	}
	ln := lns[0]
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	var peerLn net.Listener
	if s.PeerListen != "" {
		// This instance's own address, for the cancel requests its peers forward: the
		// shared address could lead back to any instance.
		if peerLn, err = net.Listen("tcp", s.PeerListen); err != nil {
			closeAll()
			return nil, err
		}
	}
	shutdown := s.ShutdownTimeout.d
	if shutdown <= 0 {
		shutdown = pool.DefaultShutdownTimeout
	}
	p := &proxy{srv: srv, addr: ln.Addr(), served: make(chan error, 1), logger: logger, newConfig: newConfig, shutdown: shutdown}
	if m != nil {
		m.setServer(srv)
		if p.metrics, err = startMetrics(s.MetricsListen, m, logger); err != nil {
			closeAll()
			if peerLn != nil {
				peerLn.Close()
			}
			return nil, err
		}
	}
	logger.Info("cmpool starting", "version", pool.Version, "addr", p.addr.String(), "replicas", len(s.Replicas))
	go func() { p.served <- srv.Serve(ln) }()
	for _, extra := range lns[1:] {
		go func() {
			if err := srv.Serve(extra); !errors.Is(err, pool.ErrServerClosed) {
				logger.Error("listener stopped", "addr", extra.Addr().String(), "error", err)
			}
		}()
	}
	if peerLn != nil {
		logger.Info("serving peers", "addr", peerLn.Addr().String(), "peer_id", int(s.PeerID))
		go func() {
			if err := srv.Serve(peerLn); !errors.Is(err, pool.ErrServerClosed) {
				logger.Error("peer listener stopped", "error", err)
			}
		}()
	}
	return p, nil
}

// wait serves until SIGTERM or SIGINT, reloading on SIGHUP, and returns the exit code.
// SIGTERM drains: no new clients, transactions in flight finish (up to shutdown_timeout),
// then idle clients get FATAL 57P01. SIGINT closes every client at once. A second
// SIGTERM or SIGINT during a drain cuts it short.
func (p *proxy) wait(sigs <-chan os.Signal) int {
	var sig os.Signal
	for sig == nil {
		select {
		case err := <-p.served:
			if errors.Is(err, pool.ErrServerClosed) {
				// SHUTDOWN from the admin console.
				p.logger.Info("shut down by the admin console")
				p.metrics.close()
				return 0
			}
			p.logger.Error("serve stopped", "error", err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = p.srv.Shutdown(ctx)
			p.metrics.close()
			return 1
		case s := <-sigs:
			switch s {
			case syscall.SIGHUP:
				p.reopenLog()
				p.reload()
				continue
			case syscall.SIGUSR1:
				p.pause()
				continue
			case syscall.SIGUSR2:
				p.resume()
				continue
			}
			sig = s
		}
	}
	if p.pauseStop != nil {
		p.pauseStop() // a SIGUSR1 pause stops waiting; Shutdown closes what is left
	}
	timeout := p.shutdown
	if sig == syscall.SIGINT || sig == syscall.SIGQUIT {
		timeout = fastShutdownTimeout
		p.logger.Info("fast shutdown: closing every client now", "signal", sig.String())
	} else {
		p.logger.Info("draining: transactions in flight may finish; send the signal again to exit now",
			"signal", sig.String(), "timeout", timeout)
	}

	p.metrics.setDraining()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.srv.Shutdown(ctx) }()
	code := 0
	for {
		select {
		case err := <-done:
			switch {
			case err != nil && (sig == syscall.SIGINT || sig == syscall.SIGQUIT):
				p.logger.Info("shut down")
			case err != nil:
				p.logger.Warn("drain timed out: remaining clients were closed", "error", err)
				code = 1
			default:
				p.logger.Info("shut down cleanly")
			}
			p.metrics.close()
			return code
		case s := <-sigs:
			if s == syscall.SIGHUP || s == syscall.SIGUSR1 || s == syscall.SIGUSR2 {
				continue
			}
			p.logger.Warn("second signal, closing every client now", "signal", s.String())
			cancel()
			code = 1
		}
	}
}

// reload applies the re-read configuration (SIGHUP).
func (p *proxy) reload() {
	if p.newConfig == nil {
		p.logger.Warn("SIGHUP: nothing to reload from")
		return
	}
	cfg, err := p.newConfig()
	if err == nil {
		cfg.LoadConfig = p.newConfig
		err = p.srv.Reload(cfg)
	}
	if err != nil {
		p.logger.Error("reload failed: the configuration in force is unchanged", "error", err)
	}
}

// clientURL is the URL a client on this machine uses to reach the proxy at addr.
func clientURL(addr net.Addr, database, user string) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, addr, database)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, net.JoinHostPort(host, port), database)
}

// pauser is the part of *pool.Server that SIGUSR1 and SIGUSR2 drive.
type pauser interface {
	Pause(ctx context.Context, database string) error
	Resume(database string) bool
}

// pause is SIGUSR1, PgBouncer's PAUSE: new transactions wait, and the server connections
// are closed once back in their pools. It returns at once; the wait goes on in the
// background until it ends or SIGUSR2 resumes.
func (p *proxy) pause() {
	ps, ok := p.srv.(pauser)
	if !ok {
		return
	}
	if p.pauseStop != nil {
		p.pauseStop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.pauseStop = cancel
	p.logger.Info("SIGUSR1: pausing: new transactions wait until SIGUSR2")
	go func() {
		if err := ps.Pause(ctx, ""); err == nil {
			p.logger.Info("paused: every server connection is closed")
		}
	}()
}

// resume is SIGUSR2, PgBouncer's RESUME.
func (p *proxy) resume() {
	ps, ok := p.srv.(pauser)
	if !ok {
		return
	}
	if p.pauseStop != nil {
		p.pauseStop()
		p.pauseStop = nil
	}
	if ps.Resume("") {
		p.logger.Info("SIGUSR2: resumed")
	}
}

// reopenLog reopens the logfile (SIGHUP), for logrotate.
func (p *proxy) reopenLog() {
	if p.logFile == nil {
		return
	}
	if err := p.logFile.reopen(); err != nil {
		p.logger.Error("cannot reopen the logfile", "error", err)
	}
}
