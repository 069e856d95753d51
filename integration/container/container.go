// Package container is the integration harness's container engine, over testcontainers-go.
// Importing it for its side effect makes the container backend of integration.Start
// (Options.Backend "container", or CMPOOL_TEST_BACKEND=container) available:
//
//	import _ "github.com/cmlite/cmpool/integration/container"
//
// It is a package of its own so that programs that only use the local backend, such as
// cmpool's demo and benchmark, do not link Docker's client.
//
// Importing it turns testcontainers-go's reaper container (Ryuk) off unless
// TESTCONTAINERS_RYUK_DISABLED is set: the harness removes its containers and networks
// itself, by label, and needs no image from a registry for it.
package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
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

func init() {
	if _, set := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !set {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	integration.RegisterContainerEngine(Engine{})
}

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

// Host is the Docker daemon's host as this process reaches the ports it publishes:
// $TESTCONTAINERS_HOST_OVERRIDE when set; 127.0.0.1 for an engine on a Unix socket or a
// named pipe, which runs on this machine; else the host of the engine's address.
// (testcontainers-go's own answer, inside a container, is the default gateway's address.)
func (Engine) Host(ctx context.Context) (string, error) {
	if host, ok := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); ok {
		return host, nil
	}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: %w", integration.ErrContainerBackendUnavailable, err)
	}
	defer cli.Close()
	return hostOf(cli.DaemonHost())
}

// hostOf is the host at which the ports of the engine at daemonURL are reached.
func hostOf(daemonURL string) (string, error) {
	u, err := url.Parse(daemonURL)
	if err != nil {
		return "", fmt.Errorf("docker host %q: %w", daemonURL, err)
	}
	switch u.Scheme {
	case "unix", "npipe":
		return "127.0.0.1", nil
	case "tcp", "http", "https", "ssh":
		if u.Hostname() != "" {
			return u.Hostname(), nil
		}
	}
	return "", fmt.Errorf("docker host %q: no host to reach its ports at; set TESTCONTAINERS_HOST_OVERRIDE", daemonURL)
}

// NewNetwork creates a bridge network with a generated name and labels.
func (Engine) NewNetwork(ctx context.Context, labels map[string]string) (integration.ContainerNetwork, error) {
	n, err := network.New(ctx, network.WithLabels(labels))
	if err != nil {
		return nil, err
	}
	return dockerNetwork{n}, nil
}

// HasImage lists the images named image.
func (Engine) HasImage(ctx context.Context, image string) (bool, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	images, err := cli.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", image)})
	if err != nil {
		return false, err
	}
	return len(images.Items) > 0, nil
}

// RemoveLabeled removes the containers, with their volumes, and then the networks that carry
// label with a value stale accepts.
func (Engine) RemoveLabeled(ctx context.Context, label string, stale func(string) bool) (int, error) {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	removed := 0
	var errs []error
	ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label)})
	if err != nil {
		return 0, err
	}
	for _, c := range ctrs.Items {
		if !stale(c.Labels[label]) {
			continue
		}
		_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", label)})
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, n := range nets.Items {
		if !stale(n.Labels[label]) {
			continue
		}
		if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
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

func (d dockerNetwork) Disconnect(ctx context.Context, containerID string) error {
	return withClient(ctx, func(cli *testcontainers.DockerClient) error {
		_, err := cli.NetworkDisconnect(ctx, d.n.ID, client.NetworkDisconnectOptions{Container: containerID, Force: true})
		return err
	})
}

func (d dockerNetwork) Connect(ctx context.Context, containerID, alias string) error {
	return withClient(ctx, func(cli *testcontainers.DockerClient) error {
		_, err := cli.NetworkConnect(ctx, d.n.ID, client.NetworkConnectOptions{
			Container:      containerID,
			EndpointConfig: &dockernetwork.EndpointSettings{Aliases: []string{alias}},
		})
		return err
	})
}

// withClient runs f with a Docker client, closed after it.
func withClient(ctx context.Context, f func(cli *testcontainers.DockerClient) error) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	return f(cli)
}

type dockerContainer struct {
	c *testcontainers.DockerContainer
}

func (d dockerContainer) ID() string { return d.c.GetContainerID() }

func (d dockerContainer) Stop(ctx context.Context, timeout time.Duration) error {
	return d.c.Stop(ctx, &timeout)
}

func (d dockerContainer) Kill(ctx context.Context) error {
	return withClient(ctx, func(cli *testcontainers.DockerClient) error {
		_, err := cli.ContainerKill(ctx, d.c.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"})
		return err
	})
}

func (d dockerContainer) Pause(ctx context.Context) error {
	return withClient(ctx, func(cli *testcontainers.DockerClient) error {
		_, err := cli.ContainerPause(ctx, d.c.GetContainerID(), client.ContainerPauseOptions{})
		return err
	})
}

func (d dockerContainer) Unpause(ctx context.Context) error {
	return withClient(ctx, func(cli *testcontainers.DockerClient) error {
		_, err := cli.ContainerUnpause(ctx, d.c.GetContainerID(), client.ContainerUnpauseOptions{})
		return err
	})
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
