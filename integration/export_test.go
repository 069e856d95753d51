package integration

import (
	"net/netip"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
)

// Internals that the external tests check without a Docker engine or PostgreSQL.
var (
	ResolveBackend             = resolveBackend
	ContainerInitScript        = containerInitScript
	ContainerReplicaEntrypoint = containerReplicaEntrypoint
	HBAConf                    = hbaConf
	IsLoopbackHost             = isLoopbackHost
	PortTaken                  = portTaken
)

// ContainerRequest returns the request the container backend makes for node n (a primary or
// a replica of primaryHost) on network networkName, with port 5432 published on
// bindIP:hostPort, and the container and host configurations its modifiers produce.
func ContainerRequest(opts Options, n *Node, primaryHost, networkName, bindIP string, hostPort int) (testcontainers.GenericContainerRequest, *container.Config, *container.HostConfig, error) {
	d := &dockerCluster{image: DefaultImage, logger: func(string, ...any) {}, network: &testcontainers.DockerNetwork{Name: networkName}}
	if bindIP != "" {
		d.bindIP = netip.MustParseAddr(bindIP)
	}
	var extra []testcontainers.ContainerCustomizer
	if n.Role == RolePrimary {
		var err error
		if extra, err = primaryCustomizers(opts); err != nil {
			return testcontainers.GenericContainerRequest{}, nil, nil, err
		}
	} else {
		extra = replicaCustomizers(n.Name, primaryHost)
	}
	req := testcontainers.GenericContainerRequest{ContainerRequest: testcontainers.ContainerRequest{Image: d.image}}
	for _, c := range d.nodeCustomizers(n, hostPort, extra) {
		if err := c.Customize(&req); err != nil {
			return req, nil, nil, err
		}
	}
	cfg, hc := &container.Config{}, &container.HostConfig{}
	if req.ConfigModifier != nil {
		req.ConfigModifier(cfg)
	}
	if req.HostConfigModifier != nil {
		req.HostConfigModifier(hc)
	}
	return req, cfg, hc, nil
}
