package pool

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCompactAddr: the addresses a detached client keeps (parkconn.go) print as Go's net
// prints the connection's own, for SHOW CLIENTS; an address with an IPv6 zone is not
// compacted (such a client parks with its connection).
func TestCompactAddr(t *testing.T) {
	for _, a := range []*net.TCPAddr{
		{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 5432},
		{IP: net.IPv4(10, 1, 2, 3), Port: 1}, // 16-byte form of an IPv4 address
		{IP: net.ParseIP("::1"), Port: 65535},
		{IP: net.ParseIP("2001:db8::17"), Port: 6432},
	} {
		c, ok := compactAddr(a)
		require.True(t, ok, a)
		require.Equal(t, a.String(), c.net().String())
		require.Equal(t, a.Port, c.net().Port)
	}
	_, ok := compactAddr(&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 5432, Zone: "eth0"})
	require.False(t, ok)
}
