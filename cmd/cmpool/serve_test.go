package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// fakeServer stands in for *pool.Server in proxy.wait.
type fakeServer struct {
	serveErr     chan error    // what Serve returns, when sent
	shutdownErr  error         // what Shutdown returns
	hangShutdown bool          // Shutdown blocks until its ctx ends
	shutdown     chan struct{} // closed when Shutdown is called
	reloads      chan pool.Config
}

func (f *fakeServer) Reload(cfg pool.Config) error {
	f.reloads <- cfg
	return nil
}

func (f *fakeServer) Serve(net.Listener) error { return <-f.serveErr }

func (f *fakeServer) Shutdown(ctx context.Context) error {
	close(f.shutdown)
	if f.hangShutdown {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.shutdownErr
}

func TestProxyWait(t *testing.T) {
	tests := []struct {
		name     string
		fake     *fakeServer
		act      func(f *fakeServer, sigs chan os.Signal)
		wantCode int
	}{
		{
			name:     "signal, clean shutdown",
			fake:     &fakeServer{},
			act:      func(_ *fakeServer, sigs chan os.Signal) { sigs <- syscall.SIGTERM },
			wantCode: 0,
		},
		{
			name:     "SIGTERM, drain times out",
			fake:     &fakeServer{shutdownErr: context.DeadlineExceeded},
			act:      func(_ *fakeServer, sigs chan os.Signal) { sigs <- syscall.SIGTERM },
			wantCode: 1,
		},
		{
			name:     "SIGINT, fast shutdown closes clients",
			fake:     &fakeServer{shutdownErr: context.DeadlineExceeded},
			act:      func(_ *fakeServer, sigs chan os.Signal) { sigs <- syscall.SIGINT },
			wantCode: 0,
		},
		{
			name: "second signal cuts a hanging drain short",
			fake: &fakeServer{hangShutdown: true},
			act: func(f *fakeServer, sigs chan os.Signal) {
				sigs <- syscall.SIGTERM
				<-f.shutdown
				sigs <- syscall.SIGTERM
			},
			wantCode: 1,
		},
		{
			name: "SIGHUP reloads, then SIGTERM drains",
			fake: &fakeServer{},
			act: func(f *fakeServer, sigs chan os.Signal) {
				sigs <- syscall.SIGHUP
				cfg := <-f.reloads
				if cfg.DefaultPoolSize != 7 {
					panic("reloaded the wrong configuration")
				}
				sigs <- syscall.SIGTERM
			},
			wantCode: 0,
		},
		{
			name:     "SHUTDOWN from the console",
			fake:     &fakeServer{},
			act:      func(f *fakeServer, _ chan os.Signal) { f.serveErr <- pool.ErrServerClosed },
			wantCode: 0,
		},
		{
			name:     "serve fails on its own",
			fake:     &fakeServer{},
			act:      func(f *fakeServer, _ chan os.Signal) { f.serveErr <- errors.New("accept: too many open files") },
			wantCode: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fake.serveErr = make(chan error, 1)
			tt.fake.shutdown = make(chan struct{})
			tt.fake.reloads = make(chan pool.Config, 1)
			p := &proxy{srv: tt.fake, served: make(chan error, 1), logger: slog.New(slog.DiscardHandler),
				shutdown:  time.Second,
				newConfig: func() (pool.Config, error) { return pool.Config{DefaultPoolSize: 7}, nil }}
			go func() { p.served <- p.srv.Serve(nil) }()
			sigs := make(chan os.Signal, 2)
			codes := make(chan int, 1)
			go func() { codes <- p.wait(sigs) }()
			tt.act(tt.fake, sigs)
			select {
			case code := <-codes:
				require.Equal(t, tt.wantCode, code)
			case <-time.After(5 * time.Second):
				t.Fatal("wait did not return")
			}
		})
	}
}

// lockedBuffer is a strings.Builder a logger and a test may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTrustListenWarning: the binary started with auth_type trust on an address other
// hosts can reach warns that anyone there logs in without a password; on loopback it
// does not.
func TestTrustListenWarning(t *testing.T) {
	for _, tc := range []struct {
		listen, authType string
		warn             bool
	}{
		{"0.0.0.0:0", "trust", true},
		{"127.0.0.1:0", "trust", false},
		{"0.0.0.0:0", "", false},
	} {
		t.Run(tc.listen+" "+tc.authType, func(t *testing.T) {
			var logs lockedBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			p, err := startProxy(settings{Listen: tc.listen, Primary: "postgres://app:pw@127.0.0.1:1/app", AuthType: tc.authType}, nil, logger)
			require.NoError(t, err)
			require.Eventually(t, func() bool { return strings.Contains(logs.String(), "listening") }, 5*time.Second, 5*time.Millisecond)
			require.NoError(t, p.srv.Shutdown(context.Background()))
			require.ErrorIs(t, <-p.served, pool.ErrServerClosed)
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "auth_type trust on a non-loopback address") &&
				strings.Contains(logs.String(), "logs in without a password")
			require.Equal(t, tc.warn, warned, logs.String())
		})
	}
}

// TestDemoSaysTrust: the demo's banner says that it trusts everyone, and only fits a demo.
func TestDemoSaysTrust(t *testing.T) {
	note := demoAuthNote(settings{AuthType: pool.AuthTrust}, "127.0.0.1:6432")
	require.Contains(t, note, "trust")
	require.Contains(t, note, "without a password")
	require.Contains(t, demoAuthNote(settings{AuthFile: "userlist.txt"}, "127.0.0.1:6432"), `"scram-sha-256"`)
}
