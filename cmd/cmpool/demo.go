package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// runDemo starts a throwaway primary and one streaming replica with the integration
// harness, serves cmpool in front of them until a signal, then stops both. It returns
// the exit code. A first signal stops cmpool gracefully; a second one cuts that short but
// still stops the servers; a third exits at once.
func runDemo(s settings, logger *slog.Logger, stdout io.Writer, sigs <-chan os.Signal) (code int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // only after the cluster is stopped: the harness may tie its processes to ctx

	// A signal while the servers start cancels the start.
	stopWatching := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-sigs:
			cancel()
		case <-stopWatching:
		}
	}()
	logger.Info("starting a throwaway primary and one streaming replica")
	cluster, err := integration.Start(ctx, integration.Options{
		Replicas: 1,
		Logf: func(format string, args ...any) {
			logger.Info(fmt.Sprintf(format, args...))
		},
	})
	close(stopWatching)
	<-watched
	if err != nil {
		if ctx.Err() != nil {
			logger.Info("interrupted")
		} else {
			logger.Error("cannot start the demo servers", "error", err)
		}
		return 1
	}
	defer func() {
		if !stopCluster(cluster, logger, sigs) {
			code = 1
		}
	}()
	if ctx.Err() != nil {
		logger.Info("interrupted")
		return 1
	}

	primary := cluster.Primary.URL("postgres", "postgres")
	replica := cluster.Replicas[0].URL("postgres", "postgres")
	s.Primary = primary
	s.Replicas = []string{replica}
	if len(s.AdminUsers) == 0 {
		s.AdminUsers = stringList{"postgres"} // psql ... dbname=cmpool user=postgres opens the console
	}
	if s.AuthType == "" && s.AuthFile == "" && len(s.Users) == 0 && s.AuthUser == "" {
		// Throwaway servers without passwords, on loopback: no password for anyone, and the
		// banner says so. Outside the demo cmpool never trusts unless told to.
		s.AuthType = pool.AuthTrust
	}
	p, err := startProxy(s, nil, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}

	dbURL := clientURL(p.addr, "postgres", "postgres")
	fmt.Fprintf(stdout, `
cmpool demo is running: a throwaway primary and one streaming replica behind cmpool.

  primary  %s
  replica  %s

%s

Point your application at cmpool:

  DATABASE_URL=%s

or connect with psql:

  psql "%s"

The admin console (SHOW POOLS, SHOW STATS, SHOW REPLICAS, ...):

  psql "%s"

Press Ctrl-C to stop cmpool and remove the servers.

`, redactURL(primary), redactURL(replica), demoAuthNote(s, p.addr.String()), dbURL, dbURL, clientURL(p.addr, "cmpool", "postgres"))

	return p.wait(sigs)
}

// demoAuthNote says how the demo's clients log in: with trust (no password at all), only
// fit for a demo on loopback, unless the settings chose otherwise.
func demoAuthNote(s settings, addr string) string {
	if s.AuthType != pool.AuthTrust {
		method := s.AuthType
		if method == "" {
			method = pool.AuthSCRAM
		}
		return fmt.Sprintf("Clients log in with auth_type %q (see docs/security.md).", method)
	}
	return fmt.Sprintf(`Authentication is trust: anyone who can reach %s logs in as any user,
without a password. That is for this demo on loopback only; a real cmpool asks for
passwords (see "Secure quick start" in docs/getting-started.md).`, addr)
}

// stopCluster stops the demo servers. A signal meanwhile abandons the wait. It reports
// whether the servers stopped cleanly.
func stopCluster(cluster *integration.Cluster, logger *slog.Logger, sigs <-chan os.Signal) bool {
	logger.Info("stopping the demo servers")
	done := make(chan error, 1)
	go func() { done <- cluster.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			logger.Error("stopping the demo servers", "error", err)
			return false
		}
		logger.Info("demo servers stopped")
		return true
	case sig := <-sigs:
		logger.Warn("signal while stopping the demo servers, exiting now", "signal", sig.String())
		return false
	}
}

// redactURL hides the password in a connection URL, for printing.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(not a URL)"
	}
	return u.Redacted()
}
