package integration

import (
	"context"
	"net/netip"
)

// Internals that the external tests check without a Docker engine or PostgreSQL.
var (
	ResolveBackend             = resolveBackend
	ContainerInitScript        = containerInitScript
	ContainerReplicaEntrypoint = containerReplicaEntrypoint
	HBAConf                    = hbaConf
	IsLoopbackHost             = isLoopbackHost
	PortTaken                  = portTaken
	ErrNoContainerEngine       = errNoContainerEngine
)

// ContainerSpecFor returns the container the container backend runs for node n (a primary
// or a replica of primaryHost) on network, with port 5432 published on bindIP:hostPort.
func ContainerSpecFor(opts Options, n *Node, primaryHost string, network ContainerNetwork, bindIP string, hostPort int) (ContainerSpec, error) {
	d := &dockerCluster{image: DefaultImage, logf: func(string, ...any) {}, network: network}
	if bindIP != "" {
		d.bindIP = netip.MustParseAddr(bindIP)
	}
	spec, err := d.nodeSpec(opts, n, primaryHost)
	spec.HostPort = hostPort
	return spec, err
}

// CheckDockerWithoutEngine is CheckDocker in a program that registered no engine.
func CheckDockerWithoutEngine(ctx context.Context) error { return checkDocker(ctx, nil) }
