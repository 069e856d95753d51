package pool

import (
	"context"
	"net"
)

// Server is a running cmpool proxy. Create it with New.
type Server struct {
	cfg Config
}

// New validates cfg, fills in defaults and returns a Server that is not yet serving.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Server{cfg: c}, nil
}

// Serve accepts client connections on ln until Shutdown. It returns ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error { panic("todo") }

// ListenAndServe listens on Config.Listen and serves.
func (s *Server) ListenAndServe() error { panic("todo") }

// Shutdown stops accepting, waits for clients to finish or ctx to end, then closes everything.
func (s *Server) Shutdown(ctx context.Context) error { panic("todo") }
