package main

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// pausingServer is a fakeServer with the console's PAUSE and RESUME.
type pausingServer struct {
	fakeServer
	pauses  chan string
	resumes chan string
}

func (f *pausingServer) Pause(ctx context.Context, database string) error {
	f.pauses <- database
	<-ctx.Done() // servers never come back: the pause waits until RESUME or shutdown
	return ctx.Err()
}

func (f *pausingServer) Resume(database string) bool {
	f.resumes <- database
	return true
}

func TestProxyPauseSignals(t *testing.T) {
	for _, stop := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGTERM} {
		t.Run(stop.String(), func(t *testing.T) {
			f := &pausingServer{
				fakeServer: fakeServer{serveErr: make(chan error, 1), shutdown: make(chan struct{}), reloads: make(chan pool.Config, 1)},
				pauses:     make(chan string, 2), resumes: make(chan string, 2),
			}
			p := &proxy{srv: f, served: make(chan error, 1), logger: slog.New(slog.DiscardHandler), shutdown: time.Second}
			sigs := make(chan os.Signal, 2)
			codes := make(chan int, 1)
			go func() { codes <- p.wait(sigs) }()

			sigs <- syscall.SIGUSR1
			require.Equal(t, "", <-f.pauses, "SIGUSR1 pauses every database")
			sigs <- syscall.SIGUSR2
			require.Equal(t, "", <-f.resumes, "SIGUSR2 resumes every database")
			sigs <- syscall.SIGUSR1 // paused again when the stop signal comes
			<-f.pauses
			sigs <- stop
			select {
			case code := <-codes:
				require.Equal(t, 0, code)
			case <-time.After(5 * time.Second):
				t.Fatal("wait did not return")
			}
			select {
			case <-f.shutdown:
			default:
				t.Fatal("Shutdown was not called")
			}
		})
	}
}

// TestProxySIGQUITIsImmediate: SIGQUIT is PgBouncer's immediate shutdown. Clients cut off
// by it are expected (exit 0), where a SIGTERM drain that had to cut them off exits 1.
func TestProxySIGQUITIsImmediate(t *testing.T) {
	for sig, want := range map[syscall.Signal]int{syscall.SIGQUIT: 0, syscall.SIGTERM: 1} {
		f := &fakeServer{serveErr: make(chan error, 1), shutdown: make(chan struct{}), shutdownErr: context.DeadlineExceeded}
		p := &proxy{srv: f, served: make(chan error, 1), logger: slog.New(slog.DiscardHandler), shutdown: time.Second}
		sigs := make(chan os.Signal, 1)
		sigs <- sig
		require.Equal(t, want, p.wait(sigs), sig.String())
	}
}
