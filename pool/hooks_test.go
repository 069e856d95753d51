package pool_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/router"
)

// A Router hook's answer and RouteRequest.Hinted are spelled as the router's route values.
func TestRouteValuesMatchTheRouter(t *testing.T) {
	require.Equal(t, router.RoutePrimary, string(pool.RoutePrimary))
	require.Equal(t, router.RouteReplica, string(pool.RouteReplica))
	require.Empty(t, string(pool.RouteDefault))
}
