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
// tests, call Start and Cluster.Stop. StopNode, StartNode, KillNode, PauseNode, ResumeNode,
// DisconnectNode, ReconnectNode and Promote simulate failures and failovers.
//
// The binaries come from Options.PGBin, else $PG_BIN, else the newest /usr/lib/postgresql/*/bin
// (Debian and Ubuntu's postgresql packages), else the directory of pg_ctl on $PATH. When the
// process runs as root, the servers run as the OS user "postgres", since PostgreSQL refuses to run
// as root. The settings favour speed over durability (fsync, full_page_writes and
// synchronous_commit are off): the data is thrown away.
//
// # Backends
//
// Options.Backend picks where the servers run; when it is empty the environment variable
// CMPOOL_TEST_BACKEND does, else the local backend described above is used.
//
//   - "local": the machine's PostgreSQL binaries, as above.
//   - "container": Docker containers started with testcontainers-go, from Options.Image, else
//     $CMPOOL_TEST_IMAGE, else LocalImage when the engine has it (built without a registry by
//     integration/container/image/build.sh), else postgres:16-alpine. The primary is configured for streaming
//     replication (wal_level replica, max_wal_senders, a pg_hba.conf entry trusting
//     replication connections); each replica is cloned from it with pg_basebackup -R over a
//     Docker network of the cluster's own. Their ports are published on the Docker host, so
//     Node.URL, StartProxy and WaitReplication work as with the local backend. StopNode and
//     StartNode stop and start a container (the node keeps its host port, on which its server
//     also listens inside the container), KillNode is docker kill, PauseNode docker pause,
//     DisconnectNode docker network disconnect, Promote runs pg_promote(). ServerPIDs returns
//     ErrLocalBackendOnly, and Node.DataDir, SocketDir and LogFile are empty. Stop removes the
//     containers and the network; leftovers of dead test processes are removed by label.
//
// The container backend's engine lives in package integration/container, which registers
// itself when imported; a test binary that uses the container backend imports it for its
// side effect (import _ "github.com/cmlite/cmpool/integration/container"). Without it,
// Start fails with an error naming the package. Programs that use only the local backend,
// such as cmpool's demo, thus do not link Docker's client.
//
// When no Docker engine is reachable, Start returns ErrContainerBackendUnavailable and
// StartCluster skips the test, except in CI (CI=true), where it fails it; CheckDocker tells in
// advance. cmpool's CI starts a Docker engine and builds the image without a registry
// (integration/container/image/build.sh). docs/testing.md walks through both backends.
package integration
