package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// metricsServer is the HTTP endpoint on --metrics-listen. For now it serves only /healthz,
// which answers 200 "ok" while serving and 503 once shutdown has begun.
type metricsServer struct {
	srv      *http.Server
	addr     net.Addr
	draining atomic.Bool
}

// startMetrics listens on addr and serves the endpoint in the background.
func startMetrics(addr string, logger *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m := &metricsServer{addr: ln.Addr()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", m.healthz)
	m.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	logger.Info("metrics listening", "addr", m.addr.String())
	return m, nil
}

func (m *metricsServer) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if m.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "shutting down")
		return
	}
	io.WriteString(w, "ok")
}

// setDraining makes /healthz fail, so that load balancers stop sending clients. Nil-safe.
func (m *metricsServer) setDraining() {
	if m != nil {
		m.draining.Store(true)
	}
}

// close stops the endpoint at once. Nil-safe.
func (m *metricsServer) close() {
	if m != nil {
		m.srv.Close()
	}
}
