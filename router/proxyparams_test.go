package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      string
	}{
		{in: "auto", want: router.RouteAuto},
		{in: "PRIMARY", want: router.RoutePrimary},
		{in: "Replica", want: router.RouteReplica},
		{in: "", err: `invalid value for cmpool.route: "" (want primary, replica or auto)`},
		{in: " primary", err: `invalid value for cmpool.route: " primary" (want primary, replica or auto)`},
		{in: "Standby", err: `invalid value for cmpool.route: "Standby" (want primary, replica or auto)`},
	} {
		got, err := router.ParseRoute(tc.in)
		if tc.err != "" {
			require.EqualError(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseMinLSN(t *testing.T) {
	lsn, err := router.ParseMinLSN(" 16/B374D848 ")
	require.NoError(t, err)
	require.Equal(t, "16/B374D848", lsn.String())

	_, err = router.ParseMinLSN("16")
	require.ErrorIs(t, err, router.ErrInvalidLSN)
	require.ErrorContains(t, err, "invalid value for cmpool.min_lsn: ")
}
