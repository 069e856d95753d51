package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"
)

// ContainerEngine creates and runs the container backend's containers. Package
// github.com/cmlite/cmpool/integration/container provides one over testcontainers-go and
// registers it when imported, so that programs that only use the local backend (cmpool's
// demo, the benchmark) do not link Docker's client:
//
//	import _ "github.com/cmlite/cmpool/integration/container"
type ContainerEngine interface {
	// Health returns nil when a Docker engine is reachable.
	Health(ctx context.Context) error
	// Host is the engine's host as this process reaches its published ports.
	Host(ctx context.Context) (string, error)
	// NewNetwork creates a network for one cluster's containers, with labels.
	NewNetwork(ctx context.Context, labels map[string]string) (ContainerNetwork, error)
	// Run creates and starts a container and waits for nothing more. It returns the container
	// whenever one was created, also with an error (its start failed), so that it can be
	// removed.
	Run(ctx context.Context, spec ContainerSpec) (Container, error)
	// HasImage reports whether the engine has image without pulling it.
	HasImage(ctx context.Context, image string) (bool, error)
	// RemoveLabeled removes the containers (with their volumes) and then the networks that
	// carry label with a value for which stale returns true, and returns how many it removed.
	RemoveLabeled(ctx context.Context, label string, stale func(value string) bool) (int, error)
}

// ContainerNetwork is a network made by ContainerEngine.NewNetwork.
type ContainerNetwork interface {
	Name() string
	Remove(ctx context.Context) error
	// Disconnect takes the container off the network: it reaches no other container there,
	// and its published ports, which go through the network, answer nothing.
	Disconnect(ctx context.Context, containerID string) error
	// Connect puts the container back on the network under alias.
	Connect(ctx context.Context, containerID, alias string) error
}

// Container is a container made by ContainerEngine.Run.
type Container interface {
	ID() string
	// Stop stops the container with its stop signal, killing it after timeout.
	Stop(ctx context.Context, timeout time.Duration) error
	// Kill sends SIGKILL; it does not wait for the container to exit.
	Kill(ctx context.Context) error
	Running(ctx context.Context) (bool, error)
	// Start starts the stopped container again.
	Start(ctx context.Context) error
	// Pause freezes every process of the container (the cgroup freezer); Unpause thaws them.
	Pause(ctx context.Context) error
	Unpause(ctx context.Context) error
	// Terminate removes the container and its volumes.
	Terminate(ctx context.Context) error
	// Logs returns the container's output so far.
	Logs(ctx context.Context) (io.ReadCloser, error)
}

// ContainerSpec is one node's container.
type ContainerSpec struct {
	Image   string
	Network ContainerNetwork
	Alias   string // the node's name on Network
	// Port is the container port published on the host, as "15432/tcp", on HostIP:HostPort;
	// the zero HostIP means every address.
	Port     string
	HostIP   netip.Addr
	HostPort int
	ShmSize  int64 // bytes of /dev/shm
	Env      map[string]string
	Files    []ContainerFile // copied in before the start
	User     string          // empty means the image's
	// Entrypoint replaces the image's; empty means the image's.
	Entrypoint []string
	Labels     map[string]string
	// Logf receives the engine's messages.
	Logf func(format string, args ...any)
}

// ContainerFile is a file copied into a container before it starts.
type ContainerFile struct {
	Path    string
	Content string
	Mode    int64
}

var (
	engineMu sync.Mutex
	engine   ContainerEngine
)

// RegisterContainerEngine makes e the engine of the container backend. Package
// integration/container calls it when imported.
func RegisterContainerEngine(e ContainerEngine) {
	engineMu.Lock()
	defer engineMu.Unlock()
	engine = e
}

func containerEngine() (ContainerEngine, error) {
	engineMu.Lock()
	defer engineMu.Unlock()
	if engine == nil {
		return nil, errNoContainerEngine
	}
	return engine, nil
}

// errNoContainerEngine: the container backend was asked for, but nothing registered an
// engine. It is a mistake in the program, not a machine without Docker, so it does not
// wrap ErrContainerBackendUnavailable: StartCluster fails rather than skips.
var errNoContainerEngine = errors.New(`integration: the container backend is not linked in: import _ "github.com/cmlite/cmpool/integration/container"`)

// CheckDocker returns nil when a Docker engine is reachable through the registered
// ContainerEngine (testcontainers-go's default provider: DOCKER_HOST,
// ~/.testcontainers.properties, the usual sockets), else an error wrapping
// ErrContainerBackendUnavailable that says why. Without a registered engine it returns an
// error saying which package to import.
func CheckDocker(ctx context.Context) error {
	e, _ := containerEngine()
	return checkDocker(ctx, e)
}

// checkDocker is CheckDocker with engine e; nil means none registered.
func checkDocker(ctx context.Context, e ContainerEngine) error {
	if e == nil {
		return errNoContainerEngine
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.Health(ctx); err != nil {
		return fmt.Errorf("%w: %w (start a Docker engine or set DOCKER_HOST)", ErrContainerBackendUnavailable, err)
	}
	return nil
}
