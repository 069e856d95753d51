package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/cmlite/cmpool/pool"
)

// shutdownTimeout bounds the graceful shutdown after the first SIGINT or SIGTERM.
const shutdownTimeout = 30 * time.Second

// newLogger returns a text logger on w at level.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// runServe runs the proxy until a signal and returns the exit code.
func runServe(s settings, logger *slog.Logger, sigs <-chan os.Signal) int {
	if s.ConfigFile != "" {
		logger.Info("read config file", "path", s.ConfigFile)
	}
	p, err := startProxy(s, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	return p.wait(sigs)
}

// proxyServer is the part of *pool.Server that proxy drives; tests fake it.
type proxyServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// proxy is a running pool.Server and its metrics endpoint.
type proxy struct {
	srv     proxyServer
	addr    net.Addr       // where clients connect
	metrics *metricsServer // nil when --metrics-listen is off
	served  chan error     // Serve's result; 1-buffered
	logger  *slog.Logger
}

// startProxy builds the pool.Server, binds the listeners and starts serving. It listens
// itself rather than calling ListenAndServe, so that a bad address fails here, before
// anything is announced, and so that the bound address is known.
func startProxy(s settings, logger *slog.Logger) (*proxy, error) {
	srv, err := pool.New(s.poolConfig(logger))
	if err != nil {
		return nil, err
	}
	ln, err := pool.Listen(context.Background(), s.Listen, s.ReusePort)
	if err != nil {
		return nil, err
	}
	var peerLn net.Listener
	if s.PeerListen != "" {
		// This instance's own address, for the cancel requests its peers forward: the
		// shared address could lead back to any instance.
		if peerLn, err = net.Listen("tcp", s.PeerListen); err != nil {
			ln.Close()
			return nil, err
		}
	}
	p := &proxy{srv: srv, addr: ln.Addr(), served: make(chan error, 1), logger: logger}
	if s.MetricsListen != "" {
		if p.metrics, err = startMetrics(s.MetricsListen, logger); err != nil {
			ln.Close()
			if peerLn != nil {
				peerLn.Close()
			}
			return nil, err
		}
	}
	logger.Info("cmpool starting", "version", version, "addr", p.addr.String(), "replicas", len(s.Replicas))
	go func() { p.served <- srv.Serve(ln) }()
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

// wait serves until the first signal, then shuts down gracefully within shutdownTimeout.
// A second signal cuts the shutdown short. It returns the exit code.
func (p *proxy) wait(sigs <-chan os.Signal) int {
	select {
	case err := <-p.served:
		p.logger.Error("serve stopped", "error", err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
		p.metrics.close()
		return 1
	case sig := <-sigs:
		p.logger.Info("shutting down; send the signal again to exit now",
			"signal", sig.String(), "timeout", shutdownTimeout)
	}

	p.metrics.setDraining()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.srv.Shutdown(ctx) }()
	code := 0
	select {
	case err := <-done:
		if err != nil {
			p.logger.Error("shutdown", "error", err)
			code = 1
		} else {
			p.logger.Info("shut down cleanly")
		}
	case sig := <-sigs:
		p.logger.Warn("second signal, exiting now", "signal", sig.String())
		code = 1
	}
	p.metrics.close()
	return code
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
