package integration

// Internals that the external tests check without a Docker engine or PostgreSQL.
var (
	ResolveBackend             = resolveBackend
	ContainerInitScript        = containerInitScript
	ContainerReplicaEntrypoint = containerReplicaEntrypoint
	HBAConf                    = hbaConf
)
