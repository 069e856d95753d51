package lease

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLeaseStateMoves(t *testing.T) {
	lives := []struct {
		name string
		path []leaseState
	}{
		{"a transaction relayed inline", []leaseState{leaseUnrelayed, leaseRelaying, leaseEnding, leaseReturning, leaseReleased}},
		{"idle in a transaction", []leaseState{leaseUnrelayed, leaseRelaying, leaseParked, leaseUnrelayed, leaseRelaying, leaseEnding, leaseReturning, leaseReleased}},
		{"settings read back", []leaseState{leaseUnrelayed, leaseRelaying, leaseEnding, leaseSyncing, leaseReturning, leaseReleased}},
		{"a retry", []leaseState{leaseUnrelayed, leaseRelaying, leaseSyncing, leaseRelaying, leaseEnding, leaseReturning, leaseReleased}},
		{"a replay on the primary", []leaseState{leaseUnrelayed, leaseRelaying, leaseSyncing, leaseReleased}},
		{"the replay's new lease", []leaseState{leaseRelaying, leaseEnding, leaseReturning, leaseReleased}},
		{"the client leaves between requests", []leaseState{leaseUnrelayed, leaseRelaying, leaseStopping, leaseReturning, leaseReleased}},
		{"the client leaves mid-request", []leaseState{leaseUnrelayed, leaseRelaying, leaseAbandoned, leaseDestroyed}},
		{"the server fails", []leaseState{leaseUnrelayed, leaseRelaying, leaseDestroyed}},
		{"a panic while parked", []leaseState{leaseUnrelayed, leaseRelaying, leaseParked, leaseAbandoned, leaseDestroyed}},
	}
	for _, life := range lives {
		t.Run(life.name, func(t *testing.T) {
			l := &Lease{}
			for _, s := range life.path {
				require.NotPanics(t, func() { l.to(s) }, "%s -> %s", l.state, s)
			}
			require.True(t, l.over())
			require.False(t, l.open())
		})
	}
}

func TestLeaseStateBadMoves(t *testing.T) {
	bad := [][2]leaseState{
		{leaseReleased, leaseRelaying},   // a returned server is never used again
		{leaseDestroyed, leaseReleased},  // nor given back twice
		{leaseReleased, leaseDestroyed},  //
		{leaseAbandoned, leaseReleased},  // a server in an unknown state never goes back
		{leaseAbandoned, leaseReturning}, //
		{leaseRelaying, leaseReleased},   // a relayed lease is returned through returning or syncing
		{leaseEnding, leaseRelaying},     // an ending lease takes no more requests
		{leaseUnrelayed, leaseParked},    // only a relay parks a lease
		{leaseAcquiring, leaseReleased},  //
	}
	for _, m := range bad {
		l := &Lease{state: m[0]}
		require.PanicsWithValue(t, "bug: lease "+m[0].String()+" -> "+m[1].String(), func() { l.to(m[1]) })
		require.Equal(t, m[0], l.state, "a refused move leaves the state as it was")
	}
}

func TestLeaseStateNames(t *testing.T) {
	for s := leaseAcquiring; s <= leaseDestroyed; s++ {
		require.NotEqual(t, "", leaseStateNames[s], "state %d", s)
	}
	require.Equal(t, "invalid", leaseState(200).String())
	for _, s := range []leaseState{leaseReleased, leaseDestroyed} {
		require.Zero(t, leaseMoves[s], "%s is final", s)
	}
}
