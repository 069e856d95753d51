package admin_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/admin"
)

func TestShowSockets(t *testing.T) {
	cols, rows, f := show(t, handMade(), "SOCKETS")
	require.Equal(t, []admin.Parts{admin.WithConnections}, f.parts)
	require.Equal(t, []string{"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid",
		"tls", "application_name", "prepared_statements", "id",
		"recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail", "send_avail"}, cols)
	type sock struct{ typ, state, ptr string }
	var got []sock
	for _, r := range rows {
		got = append(got, sock{r[0], r[4], r[14]})
		require.Equal(t, []string{"0", "0", "0", "0", "0", "0", "0"}, r[21:])
	}
	// Clients by connect time, then servers by connect time; PgBouncer's list names.
	require.Equal(t, []sock{{"C", "cl_active", "c0x0"}, {"C", "cl_active", "c0x1"}, {"C", "cl_waiting", "c0x2"},
		{"C", "cl_waiting", "c0x3"}, {"C", "cl_login", "c0x4"}, {"S", "sv_active", "s0x1"}, {"S", "sv_idle", "s0x2"}}, got)

	// The active ones: clients logging in, waiting for a server or linked to one, and
	// servers lent.
	_, rows, _ = show(t, handMade(), "ACTIVE_SOCKETS")
	got = nil
	for _, r := range rows {
		got = append(got, sock{r[0], r[4], r[14]})
	}
	require.Equal(t, []sock{{"C", "cl_active", "c0x1"}, {"C", "cl_waiting", "c0x2"}, {"C", "cl_waiting", "c0x3"},
		{"C", "cl_login", "c0x4"}, {"S", "sv_active", "s0x1"}}, got)
}

func TestShowMem(t *testing.T) {
	cols, rows, f := show(t, admin.Snapshot{}, "MEM")
	require.Empty(t, f.parts, "SHOW MEM reads the runtime, not a snapshot")
	require.Equal(t, []string{"name", "size", "used", "free", "memtotal"}, cols)
	var names []string
	var used, total int64
	for _, r := range rows {
		names = append(names, r[0])
		n := make([]int64, 4)
		for i := range n {
			v, err := strconv.ParseInt(r[i+1], 10, 64)
			require.NoError(t, err, "row %v", r)
			require.GreaterOrEqual(t, v, int64(0), "row %v", r)
			n[i] = v
		}
		require.Equal(t, n[3], n[1]+n[2], "memtotal = used + free in %v", r)
		if r[0] != "total" {
			used, total = used+n[1], total+n[3]
		} else {
			require.Equal(t, []int64{used, total}, []int64{n[1], n[3]}, "the total row adds the others up")
		}
	}
	require.Equal(t, []string{"heap", "stack", "mspan", "mcache", "gc", "other", "total"}, names)
	require.NotEqual(t, "0", rows[0][1], "the average heap object has a size")
}

func TestShowPeerPoolsAndDNS(t *testing.T) {
	cols, rows, _ := show(t, handMade(), "PEER_POOLS")
	require.Equal(t, []string{"peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active_cancel", "sv_login"}, cols)
	require.Equal(t, [][]string{{"1", "0", "0", "0", "0"}, {"2", "0", "0", "0", "0"}}, rows)

	cols, rows, _ = show(t, handMade(), "DNS_HOSTS")
	require.Equal(t, []string{"hostname", "ttl", "addrs"}, cols)
	require.Empty(t, rows)
	cols, rows, _ = show(t, handMade(), "DNS_ZONES")
	require.Equal(t, []string{"zonename", "serial", "count"}, cols)
	require.Empty(t, rows)

	// The session parameters drivers ask for.
	cols, rows, _ = show(t, handMade(), "client_encoding")
	require.Equal(t, []string{"client_encoding"}, cols)
	require.Equal(t, [][]string{{"UTF8"}}, rows)
}

func TestConsoleRefusalsExplain(t *testing.T) {
	f := &fakeController{roles: map[string]admin.Role{"root": admin.RoleAdmin, "watcher": admin.RoleStats}}
	for query, want := range map[string]string{
		"SUSPEND":  "so_reuseport",
		"SHOW FDS": "so_reuseport",
	} {
		out, failed := newConsole(f, "root").Run(context.Background(), query)
		require.NotNil(t, failed, query)
		require.Equal(t, "0A000", failed.Code)
		require.Contains(t, failed.Hint, want, query)
		require.Equal(t, "0A000", decode(t, out).err.Code)
	}
	// SET and KILL_CLIENT are for admin_users; stats_users may not.
	for _, query := range []string{"SET default_pool_size = 3", "KILL_CLIENT 1", "SHUTDOWN WAIT_FOR_CLIENTS"} {
		_, failed := newConsole(f, "watcher").Run(context.Background(), query)
		require.NotNil(t, failed, query)
		require.Equal(t, "42501", failed.Code, query)
	}
	require.Empty(t, f.calls)
}
