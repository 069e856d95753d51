// Package container is the integration harness's container engine, over testcontainers-go.
// Importing it for its side effect makes the container backend of integration.Start
// (Options.Backend "container", or CMPOOL_TEST_BACKEND=container) available:
//
//	import _ "github.com/cmlite/cmpool/integration/container"
//
// It is a package of its own so that programs that only use the local backend, such as
// cmpool's demo and benchmark, do not link Docker's client.
package container

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	dockernetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"

	"github.com/cmlite/cmpool/integration"
)

func init() { integration.RegisterContainerEngine(Engine{}) }

// Engine is an integration.ContainerEngine over testcontainers-go's default Docker provider
// (DOCKER_HOST, ~/.testcontainers.properties, the usual sockets).
type Engine struct{}

var _ integration.ContainerEngine = Engine{}

// Health runs testcontainers-go's provider health check.
func (Engine) Health(ctx context.Context) (err error) {
	defer func() {
		// testcontainers-go panics when it finds no Docker socket at all.
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return err
	}
	defer provider.Close()
	return provider.Health(ctx)
}

// Host is the Docker daemon's host.
func (Engine) Host(ctx context.Context) (string, error) {
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return "", fmt.Errorf("%w: %w", integration.ErrContainerBackendUnavailable, err)
	}
	defer provider.Close()
	return provider.DaemonHost(ctx)
}

// NewNetwork creates a bridge network with a generated name.
func (Engine) NewNetwork(ctx context.Context) (integration.ContainerNetwork, error) {
	n, err := network.New(ctx)
	if err != nil {
		return nil, err
	}
	return dockerNetwork{n}, nil
}

// Run creates and starts spec's container.
func (Engine) Run(ctx context.Context, spec integration.ContainerSpec) (integration.Container, error) {
	opts, err := customizers(spec)
	if err != nil {
		return nil, err
	}
	ctr, err := testcontainers.Run(ctx, spec.Image, opts...)
	if ctr == nil {
		return nil, err
	}
	return dockerContainer{ctr}, err
}

// customizers are spec as testcontainers-go settings.
func customizers(spec integration.ContainerSpec) ([]testcontainers.ContainerCustomizer, error) {
	logf := spec.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	opts := []testcontainers.ContainerCustomizer{testcontainers.WithLogger(logfLogger(logf))}
	if spec.Network != nil {
		n, ok := spec.Network.(dockerNetwork)
		if !ok {
			return nil, fmt.Errorf("integration/container: network %q is not this engine's", spec.Network.Name())
		}
		opts = append(opts, network.WithNetwork([]string{spec.Alias}, n.n))
	}
	if spec.Port != "" {
		opts = append(opts, testcontainers.WithExposedPorts(spec.Port),
			testcontainers.WithHostConfigModifier(publishConfig(spec)))
	}
	if len(spec.Labels) > 0 {
		opts = append(opts, testcontainers.WithLabels(spec.Labels))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, testcontainers.WithEnv(spec.Env))
	}
	for _, f := range spec.Files {
		opts = append(opts, testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader:            strings.NewReader(f.Content),
			ContainerFilePath: f.Path,
			FileMode:          f.Mode,
		}))
	}
	if spec.User != "" {
		opts = append(opts, testcontainers.WithConfigModifier(func(cfg *container.Config) { cfg.User = spec.User }))
	}
	if len(spec.Entrypoint) > 0 {
		opts = append(opts, testcontainers.WithEntrypoint(spec.Entrypoint...))
	}
	return opts, nil
}

// publishConfig publishes spec's port on HostIP:HostPort (every address when HostIP is the
// zero Addr) and sizes /dev/shm.
func publishConfig(spec integration.ContainerSpec) func(*container.HostConfig) {
	return func(hc *container.HostConfig) {
		if spec.ShmSize > 0 {
			hc.ShmSize = spec.ShmSize
		}
		if hc.PortBindings == nil {
			hc.PortBindings = dockernetwork.PortMap{}
		}
		hc.PortBindings[dockernetwork.MustParsePort(spec.Port)] = []dockernetwork.PortBinding{
			{HostIP: spec.HostIP, HostPort: strconv.Itoa(spec.HostPort)},
		}
	}
}

// logfLogger passes testcontainers-go's messages to a Logf.
type logfLogger func(format string, args ...any)

func (l logfLogger) Printf(format string, args ...any) { l(format, args...) }

type dockerNetwork struct{ n *testcontainers.DockerNetwork }

func (d dockerNetwork) Name() string                     { return d.n.Name }
func (d dockerNetwork) Remove(ctx context.Context) error { return d.n.Remove(ctx) }

type dockerContainer struct {
	c *testcontainers.DockerContainer
}

func (d dockerContainer) ID() string { return d.c.GetContainerID() }

func (d dockerContainer) Stop(ctx context.Context, timeout time.Duration) error {
	return d.c.Stop(ctx, &timeout)
}

func (d dockerContainer) Kill(ctx context.Context) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.ContainerKill(ctx, d.c.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"})
	return err
}

func (d dockerContainer) Running(ctx context.Context) (bool, error) {
	st, err := d.c.State(ctx)
	if err != nil {
		return false, err
	}
	return st.Running, nil
}

func (d dockerContainer) Start(ctx context.Context) error { return d.c.Start(ctx) }

func (d dockerContainer) Terminate(ctx context.Context) error {
	return testcontainers.TerminateContainer(d.c, testcontainers.StopContext(ctx))
}

func (d dockerContainer) Logs(ctx context.Context) (io.ReadCloser, error) { return d.c.Logs(ctx) }
