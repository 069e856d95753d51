// Package integration starts real PostgreSQL servers for tests: a primary and any number of
// streaming replicas, on free loopback ports, from the machine's PostgreSQL binaries (initdb for
// the primary, pg_basebackup -R for the replicas). cmpool's end-to-end tests use it, and so does
// `cmpool demo`; it is exported so that you can run the same setup in your own tests.
//
// Every server trusts the superuser "postgres" on 127.0.0.1. In a test:
//
//	func TestReadsGoToReplica(t *testing.T) {
//		cluster := integration.StartCluster(t, integration.Options{Replicas: 1})
//		primaryURL := cluster.Primary.URL("postgres", "postgres")
//		replicaURL := cluster.Replicas[0].URL("postgres", "postgres")
//		// ... write through primaryURL, then:
//		require.NoError(t, cluster.WaitReplication(t.Context()))
//		// ... the write is now visible through replicaURL.
//	}
//
// StartCluster stops the servers and removes their files when the test ends. It skips the test
// when PostgreSQL is not installed, except when the environment variable CI is "true". Outside
// tests, call Start and Cluster.Stop. StopNode, StartNode and Promote simulate failures and
// failovers.
//
// The binaries come from Options.PGBin, else $PG_BIN, else the newest /usr/lib/postgresql/*/bin
// (Debian and Ubuntu's postgresql packages), else the directory of pg_ctl on $PATH. When the
// process runs as root, the servers run as the OS user "postgres", since PostgreSQL refuses to run
// as root. The settings favour speed over durability (fsync, full_page_writes and
// synchronous_commit are off): the data is thrown away.
//
// Options.Backend "container" is a seam for a backend that runs the servers in containers with
// testcontainers-go (image Options.Image, postgres:16-alpine by default). It is not implemented:
// no Docker engine is available where this package is developed, so Start returns
// ErrContainerBackendUnavailable for it.
package integration
