package pool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// Clients made of bare sockets, for the tests of idle clients: they hold nothing in the
// test's heap but a descriptor, so that the heap measured is cmpool's alone.

// serveProxy runs a cmpool with cfg (its Logger set here) on a loopback port until the
// test ends, and returns it and its address. It must shut down within 5 s then.
func serveProxy(tb testing.TB, cfg pool.Config) (*pool.Server, *net.TCPAddr) {
	tb.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := pool.New(cfg)
	require.NoError(tb, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Error(err)
		}
		if err := <-done; !errors.Is(err, pool.ErrServerClosed) {
			tb.Error(err)
		}
	})
	return srv, ln.Addr().(*net.TCPAddr)
}

// cannedProxy runs a cmpool in front of cannedBackend with cfg (Primary and AuthType set
// here), and returns it and its port.
func cannedProxy(t *testing.T, cfg pool.Config) (*pool.Server, int) {
	cfg.Primary = "postgres://bench@" + cannedBackend(t) + "/bench?sslmode=disable"
	cfg.AuthType = pool.AuthTrust
	srv, addr := serveProxy(t, cfg)
	return srv, addr.Port
}

// rawStartup is a StartupMessage for user and database bench with params.
func rawStartup(t testing.TB, params map[string]string) []byte {
	p := map[string]string{"user": "bench", "database": "bench"}
	for k, v := range params {
		p[k] = v
	}
	b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: p}).Encode(nil)
	require.NoError(t, err)
	return b
}

// rawQuery is a simple Query message.
func rawQuery(t testing.TB, sql string) []byte {
	b, err := (&pgproto3.Query{String: sql}).Encode(nil)
	require.NoError(t, err)
	return b
}

// rawDial connects a bare socket to cmpool on port, closed when the test ends.
func rawDial(t testing.TB, port int) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}))
	return fd
}

// rawRoundTrip sends req on fd and reads the reply into scratch up to ReadyForQuery,
// which cmpool's login and the canned server send last, alone at the end of a reply. It
// may run on any goroutine.
func rawRoundTrip(fd int, req, scratch []byte) error {
	if _, err := syscall.Write(fd, req); err != nil {
		return err
	}
	got := 0
	for {
		n, err := syscall.Read(fd, scratch[got:])
		switch {
		case err != nil:
			return err
		case n == 0:
			return errors.New("the proxy hung up")
		}
		got += n
		if scratch[0] == 'E' {
			return fmt.Errorf("ErrorResponse: %q", scratch[:got])
		}
		if got >= 6 && scratch[got-6] == 'Z' {
			return nil
		}
	}
}
