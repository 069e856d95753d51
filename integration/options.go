package integration

import (
	"fmt"
	"strings"
)

// Backends for Options.Backend.
const (
	BackendLocal     = "local"
	BackendContainer = "container"
)

// DefaultImage is the container image used by the container backend when Options.Image and
// $CMPOOL_TEST_IMAGE are empty and the engine does not have LocalImage.
const DefaultImage = "postgres:16-alpine"

// LocalImage is the image integration/container/image/build.sh builds without any registry.
// The container backend prefers it to DefaultImage when the engine has it.
const LocalImage = "cmpool-test/postgres:15"

// Environment variables that choose the backend when Options leaves it open.
const (
	EnvBackend = "CMPOOL_TEST_BACKEND" // "local" or "container"
	EnvImage   = "CMPOOL_TEST_IMAGE"   // the container image
)

// Options configures Start. The zero value starts a primary without replicas from the newest local
// PostgreSQL installation.
type Options struct {
	// Replicas is the number of streaming replicas. Zero starts the primary only.
	Replicas int

	// PGBin is the directory with initdb, pg_ctl, postgres and pg_basebackup. Empty means $PG_BIN,
	// else the newest /usr/lib/postgresql/*/bin, else the directory of pg_ctl on $PATH. Local
	// backend only.
	PGBin string

	// Backend is BackendLocal (servers from the machine's PostgreSQL binaries) or
	// BackendContainer (servers in Docker containers, through testcontainers-go). Empty means
	// $CMPOOL_TEST_BACKEND, else BackendLocal.
	Backend string

	// Image is the container image for the container backend: an official postgres image or one
	// built like it (docker-entrypoint.sh, $PGDATA, pg_basebackup). Empty means
	// $CMPOOL_TEST_IMAGE, else LocalImage when the engine has it, else DefaultImage.
	Image string

	// Settings are extra postgresql.conf settings for the primary and the replicas. They override
	// the harness defaults, except port, unix_socket_directories and cluster_name, which are per node.
	Settings map[string]string

	// HBA holds extra pg_hba.conf lines, placed before the default trust lines so they match first.
	HBA []string

	// PasswordAuth makes TCP logins of every user except the superuser (and replication)
	// use scram-sha-256 instead of trust. Unix-socket logins stay trusted. False keeps the
	// default: trust for everyone.
	PasswordAuth bool

	// TLSCert and TLSKey are a server certificate and key (PEM) to turn ssl on with. Nil
	// means ssl stays off.
	TLSCert, TLSKey []byte

	// BaseDir is the directory in which the cluster's own temporary directory is created (local
	// backend only). Empty means /dev/shm when it has at least 2 GiB free (memory-backed:
	// servers start several times faster), else os.TempDir(). When running as root, the
	// postgres OS user must be able to traverse it.
	BaseDir string

	// Logf receives progress messages. Nil means silent.
	Logf func(format string, args ...any)
}

// resolveBackend returns the backend and container image Start uses for opts, reading the
// environment through getenv when opts leaves them empty.
func resolveBackend(opts Options, getenv func(string) string) (backend, image string, err error) {
	backend = opts.Backend
	if backend == "" {
		backend = strings.TrimSpace(getenv(EnvBackend))
	}
	switch backend {
	case "", BackendLocal:
		backend = BackendLocal
	case BackendContainer:
	default:
		from := "Options.Backend"
		if opts.Backend == "" {
			from = "$" + EnvBackend
		}
		return "", "", fmt.Errorf("integration: unknown %s %q (want %q or %q)", from, backend, BackendLocal, BackendContainer)
	}
	image = opts.Image
	if image == "" {
		image = strings.TrimSpace(getenv(EnvImage))
	}
	if image == "" {
		image = DefaultImage
	}
	return backend, image, nil
}
