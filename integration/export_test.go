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
func ContainerSpecFor(opts Options, n *Node, primaryHost string, primaryPort int, network ContainerNetwork, bindIP string, hostPort int) (ContainerSpec, error) {
	d := &dockerCluster{image: DefaultImage, logf: func(string, ...any) {}, network: network}
	if bindIP != "" {
		d.bindIP = netip.MustParseAddr(bindIP)
	}
	spec, err := d.nodeSpec(opts, n, &Node{Name: primaryHost, Port: primaryPort})
	spec = withPort(spec, hostPort)
	return spec, err
}

// RegisteredEngine is the engine the container backend runs on.
func RegisteredEngine() (ContainerEngine, error) { return containerEngine() }

// RemoveLeftovers removes what dead processes of this machine left on e, as the first Start
// of a process does, and returns how many containers and networks it removed.
func RemoveLeftovers(ctx context.Context, e ContainerEngine) (int, error) {
	return e.RemoveLabeled(ctx, LabelOwner, ownerGone)
}

// OwnerLabel is the LabelOwner value of what this process makes.
var OwnerLabel = ownerLabel

// CheckDockerWithoutEngine is CheckDocker in a program that registered no engine.
func CheckDockerWithoutEngine(ctx context.Context) error { return checkDocker(ctx, nil) }
