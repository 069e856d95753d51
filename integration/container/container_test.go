package container

import (
	"context"
	"net/netip"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"

	"github.com/cmlite/cmpool/integration"
)

// request applies spec's customizers to a request, and returns it with the container and
// host configurations its modifiers produce.
func request(t *testing.T, spec integration.ContainerSpec) (testcontainers.GenericContainerRequest, *container.Config, *container.HostConfig) {
	t.Helper()
	opts, err := customizers(spec)
	require.NoError(t, err)
	req := testcontainers.GenericContainerRequest{ContainerRequest: testcontainers.ContainerRequest{Image: spec.Image}}
	for _, o := range opts {
		require.NoError(t, o.Customize(&req))
	}
	cfg, hc := &container.Config{}, &container.HostConfig{}
	if req.ConfigModifier != nil {
		req.ConfigModifier(cfg)
	}
	if req.HostConfigModifier != nil {
		req.HostConfigModifier(hc)
	}
	return req, cfg, hc
}

func TestRegistered(t *testing.T) {
	// The engine registered itself: without a Docker engine, CheckDocker says so rather
	// than asking for this package.
	err := integration.CheckDocker(context.Background())
	if err != nil {
		require.ErrorIs(t, err, integration.ErrContainerBackendUnavailable)
	}
}

func TestCustomizers(t *testing.T) {
	net := dockerNetwork{&testcontainers.DockerNetwork{Name: "cmpool-net"}}
	req, cfg, hc := request(t, integration.ContainerSpec{
		Image:    "postgres:16-alpine",
		Network:  net,
		Alias:    "primary",
		Port:     "5432/tcp",
		HostIP:   netip.MustParseAddr("127.0.0.1"),
		HostPort: 15432,
		ShmSize:  256 << 20,
		Env:      map[string]string{"POSTGRES_USER": "postgres"},
		Files:    []integration.ContainerFile{{Path: "/docker-entrypoint-initdb.d/x.sh", Content: "#!/bin/sh\n", Mode: 0o755}},
		Labels:   map[string]string{"org.cmpool.integration.node": "primary"},
	})
	require.Equal(t, "postgres:16-alpine", req.Image)
	require.Equal(t, []string{"cmpool-net"}, req.Networks)
	require.Equal(t, map[string][]string{"cmpool-net": {"primary"}}, req.NetworkAliases)
	require.Equal(t, []string{"5432/tcp"}, req.ExposedPorts)
	require.Equal(t, "postgres", req.Env["POSTGRES_USER"])
	require.Equal(t, "primary", req.Labels["org.cmpool.integration.node"])
	require.Len(t, req.Files, 1)
	require.Equal(t, "/docker-entrypoint-initdb.d/x.sh", req.Files[0].ContainerFilePath)
	require.Equal(t, int64(0o755), req.Files[0].FileMode)
	require.Empty(t, req.Entrypoint)
	require.Empty(t, cfg.User)
	require.Equal(t, int64(256<<20), hc.ShmSize)
	bindings := hc.PortBindings[network.MustParsePort("5432/tcp")]
	require.Len(t, bindings, 1)
	require.Equal(t, "127.0.0.1", bindings[0].HostIP.String())
	require.Equal(t, "15432", bindings[0].HostPort)

	req, cfg, hc = request(t, integration.ContainerSpec{
		Image:      "postgres:16-alpine",
		Network:    net,
		Alias:      "replica1",
		Port:       "5432/tcp",
		HostPort:   15433,
		User:       "postgres",
		Entrypoint: []string{"sh", "-c", "exec docker-entrypoint.sh postgres"},
	})
	require.Equal(t, map[string][]string{"cmpool-net": {"replica1"}}, req.NetworkAliases)
	require.Empty(t, req.Files)
	require.Empty(t, req.Env)
	require.Equal(t, "postgres", cfg.User)
	require.Equal(t, []string{"sh", "-c", "exec docker-entrypoint.sh postgres"}, req.Entrypoint)
	bindings = hc.PortBindings[network.MustParsePort("5432/tcp")]
	require.Len(t, bindings, 1)
	require.False(t, bindings[0].HostIP.IsValid(), "every address")
	require.Equal(t, "15433", bindings[0].HostPort)

	_, err := customizers(integration.ContainerSpec{Network: otherNetwork{}})
	require.ErrorContains(t, err, "not this engine's")
}

type otherNetwork struct{}

func (otherNetwork) Name() string                 { return "other" }
func (otherNetwork) Remove(context.Context) error { return nil }

func (otherNetwork) Disconnect(context.Context, string) error      { return nil }
func (otherNetwork) Connect(context.Context, string, string) error { return nil }
