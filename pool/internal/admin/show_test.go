package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/router"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// handMade is a server with two databases: app (a primary and a replica pool for alice,
// and a replaced primary pool whose counters still count) and billing (bob).
func handMade() admin.Snapshot {
	return admin.Snapshot{
		Pools: []admin.Pool{
			{Database: "app", User: "alice", Backend: "10.0.0.2:5432", Live: true, Mode: "transaction",
				Servers: 3, Idle: 1, Active: 2, Max: 10, CancelsActive: 1, BeingCanceled: 1,
				Totals: admin.Totals{Xacts: 5, Queries: 7, Assignments: 4, Received: 100, Sent: 200, XactTime: 5_000_000, QueryTime: 7_000, WaitTime: 3_000, Binds: 1}},
			{Database: "app", User: "alice", Backend: "primary", Live: true, Mode: "transaction",
				Servers: 2, Idle: 1, Active: 1, Login: 1, Max: 10, CancelsWaiting: 2, CancelConns: 1,
				Totals: admin.Totals{Xacts: 10, Queries: 20, Assignments: 6, Waits: 1, Received: 1000, Sent: 2000, XactTime: 10_000_000, QueryTime: 20_000, WaitTime: 2_000_000, ClientParses: 3, ServerParses: 2}},
			{Database: "app", User: "carol", Backend: "replica 1",
				Totals: admin.Totals{Xacts: 1, Queries: 1}},
			{Database: "billing", User: "bob", Backend: "primary", Live: true, Mode: "session", Servers: 1, Active: 1, Max: 5,
				Totals: admin.Totals{Xacts: 2, Queries: 2, Assignments: 2}},
		},
		Clients: []admin.Client{
			{LoggedIn: true, User: "alice", Database: "app", Waiting: true, Wait: 2500 * time.Millisecond,
				Addr: "127.0.0.1:40001", LocalAddr: "127.0.0.1:6432", ConnectTime: t0.Add(2 * time.Second), RequestTime: t0.Add(3 * time.Second),
				ID: 2, Ptr: "c0x2", ApplicationName: "psql", PreparedStatements: 4},
			{LoggedIn: true, User: "alice", Database: "app", Waiting: true, Wait: time.Second,
				Addr: "127.0.0.1:40002", LocalAddr: "127.0.0.1:6432", ConnectTime: t0.Add(3 * time.Second), RequestTime: t0.Add(3 * time.Second), ID: 3, Ptr: "c0x3"},
			{LoggedIn: true, User: "alice", Database: "app", Addr: "[::1]:40003", LocalAddr: "[::1]:6432",
				ConnectTime: t0.Add(time.Second), RequestTime: t0.Add(time.Second), ID: 1, Ptr: "c0x1", Link: "s0x1", ApplicationName: "billing-job", TLS: "TLS 1.3/TLS_AES_128_GCM_SHA256", CloseNeeded: true,
				Pinned: []string{"advisory_lock", "temp_table"}},
			{LoggedIn: true, Admin: true, User: "root", Database: admin.DatabaseName, ConnectTime: t0, RequestTime: t0, ID: 7, Ptr: "c0x0",
				Addr: "127.0.0.1:40000", LocalAddr: "127.0.0.1:6432"},
			{Waiting: true, Wait: time.Hour, ConnectTime: t0.Add(4 * time.Second), RequestTime: t0.Add(4 * time.Second), ID: 4, Ptr: "c0x4",
				Addr: "127.0.0.1:40004", LocalAddr: "127.0.0.1:6432"},
		},
		Servers: []admin.ServerConn{
			{User: "app_owner", Database: "app", Addr: "127.0.0.1:5432", LocalAddr: "127.0.0.1:50001", ConnectTime: t0.Add(time.Minute),
				Ptr: "s0x2", RemotePID: 4242},
			{User: "alice", Database: "app", Active: true, Addr: "127.0.0.1:5432", LocalAddr: "127.0.0.1:50000", ConnectTime: t0,
				CloseNeeded: true, Ptr: "s0x1", Link: "c0x1", RemotePID: 4241, PreparedStatements: 3},
		},
		Databases: []admin.Database{
			{Name: "billing", Host: "db2", Port: 5433, DBName: "bills", ForceUser: "bob", PoolSize: 5, MinPoolSize: 1, Mode: "session", Disabled: true},
			{Name: "app", Host: "db1", Port: 5432, DBName: "app", PoolSize: 10, MinPoolSize: 1, Mode: "transaction"},
		},
		Config:   []admin.ConfigEntry{{Key: "listen_addr", Value: "127.0.0.1:6432", Default: "127.0.0.1:6432"}, {Key: "pool_mode", Value: "transaction", Default: "transaction", Changeable: true}},
		Peers:    map[int]string{2: "10.0.0.9:6432", 1: "peer-one"},
		Replicas: []router.ReplicaStatus{{Index: 0, Host: "10.0.0.2:5432", Role: "replica", State: "up", LagBytes: 16, LagTime: 1500 * time.Millisecond, BannedUntil: t0.Add(time.Hour), LastError: "boom"}},
		Paused:   []string{"app", "billing"},
		Uptime:   90*time.Minute + 400*time.Millisecond,
		Now:      t0,
	}
}

// show runs SHOW what over snap and returns its columns and rows, NULL as "<null>".
func show(t *testing.T, snap admin.Snapshot, what string) (cols []string, rows [][]string, f *fakeController) {
	t.Helper()
	f = &fakeController{snap: snap}
	out, failed := newConsole(f, "root").Run(context.Background(), "SHOW "+what)
	require.Nil(t, failed)
	r := decode(t, out)
	require.Equal(t, []string{"SHOW"}, r.tags)
	require.Len(t, r.cols, 1)
	for _, row := range r.rows[0] {
		var vals []string
		for _, v := range row {
			if v == nil {
				vals = append(vals, "<null>")
			} else {
				vals = append(vals, *v)
			}
		}
		rows = append(rows, vals)
	}
	return r.cols[0], rows, f
}

func TestShowPools(t *testing.T) {
	cols, rows, f := show(t, handMade(), "POOLS")
	require.Equal(t, []admin.Parts{0}, f.parts)
	require.Equal(t, []string{"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
		"sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
		"maxwait", "maxwait_us", "pool_mode"}, cols)
	require.Equal(t, [][]string{
		// The two live pools of app/alice add up; the replaced one of carol is left out.
		{"app", "alice", "1", "2", "1", "2", "3", "1", "1", "2", "0", "0", "1", "2", "500000", "transaction"},
		{"billing", "bob", "0", "0", "0", "0", "1", "0", "0", "0", "0", "0", "0", "0", "0", "session"},
		{"cmpool", "cmpool", "1", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "statement"},
	}, rows)
}

func TestShowStats(t *testing.T) {
	snap := handMade()
	cols, rows, _ := show(t, snap, "STATS_TOTALS")
	require.Equal(t, []string{"database", "xact_count", "query_count", "server_assignment_count", "bytes_received", "bytes_sent",
		"xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"}, cols)
	app := []string{"app", "16", "28", "10", "1100", "2200", "15000", "27", "2003", "3", "2", "1"}
	billing := []string{"billing", "2", "2", "2", "0", "0", "0", "0", "0", "0", "0", "0"}
	// The replaced pool's totals count: app has 5+10+1 transactions. Times are in µs.
	require.Equal(t, [][]string{app, billing}, rows)

	// Before the first stats period ends, every database with totals averages zero.
	zeros := []string{"0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"}
	cols, rows, _ = show(t, snap, "STATS")
	require.Len(t, cols, 23)
	require.Equal(t, "avg_bind_count", cols[22])
	require.Equal(t, [][]string{append(append([]string{}, app...), zeros...), append(append([]string{}, billing...), zeros...)}, rows)
	_, rows, _ = show(t, snap, "STATS_AVERAGES")
	require.Equal(t, [][]string{append([]string{"app"}, zeros...), append([]string{"billing"}, zeros...)}, rows)

	snap.Averages = map[string]admin.Averages{"app": {Xacts: 1, Queries: 2, Assignments: 3, Recv: 4, Sent: 5, XactTime: 6, QueryTime: 7, WaitTime: 8,
		ClientParses: 9, ServerParses: 10, Binds: 11}}
	_, rows, _ = show(t, snap, "STATS_AVERAGES")
	require.Equal(t, [][]string{{"app", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}}, rows)

	_, rows, _ = show(t, snap, "TOTALS")
	require.Equal(t, [][]string{{"xact_count", "18"}, {"query_count", "30"}, {"server_assignment_count", "12"},
		{"bytes_received", "1100"}, {"bytes_sent", "2200"}, {"xact_time", "15000"}, {"query_time", "27"}, {"wait_time", "2003"}}, rows)
}

func TestAveragesOf(t *testing.T) {
	d := admin.Totals{Xacts: 120, Queries: 240, Received: 600, XactTime: 120 * 5000, QueryTime: 240 * 2000, WaitTime: 60 * 3000}
	require.Equal(t, admin.Averages{Xacts: 2, Queries: 4, Recv: 10, XactTime: 5, QueryTime: 2, WaitTime: 3}, admin.AveragesOf(d, time.Minute))
	require.Equal(t, admin.Averages{}, admin.AveragesOf(admin.Totals{}, 0))
	require.Equal(t, admin.Totals{Xacts: 1}, d.Plus(admin.Totals{Xacts: 1}).Minus(d))
}

func TestShowClientsAndServers(t *testing.T) {
	cols, rows, f := show(t, handMade(), "CLIENTS")
	require.Equal(t, []admin.Parts{admin.WithConnections}, f.parts)
	require.Equal(t, []string{"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid",
		"tls", "application_name", "prepared_statements", "id", "pinned"}, cols)
	require.Equal(t, [][]string{ // by connect time
		{"C", "root", "cmpool", "none", "active", "127.0.0.1", "40000", "127.0.0.1", "6432", "2026-01-02 03:04:05 UTC", "2026-01-02 03:04:05 UTC",
			"0", "0", "0", "c0x0", "", "0", "", "", "0", "7", ""},
		{"C", "alice", "app", "none", "active", "::1", "40003", "::1", "6432", "2026-01-02 03:04:06 UTC", "2026-01-02 03:04:06 UTC",
			"0", "0", "1", "c0x1", "s0x1", "0", "TLS 1.3/TLS_AES_128_GCM_SHA256", "billing-job", "0", "1", "advisory_lock,temp_table"},
		{"C", "alice", "app", "none", "waiting", "127.0.0.1", "40001", "127.0.0.1", "6432", "2026-01-02 03:04:07 UTC", "2026-01-02 03:04:08 UTC",
			"2", "500000", "0", "c0x2", "", "0", "", "psql", "4", "2", ""},
		{"C", "alice", "app", "none", "waiting", "127.0.0.1", "40002", "127.0.0.1", "6432", "2026-01-02 03:04:08 UTC", "2026-01-02 03:04:08 UTC",
			"1", "0", "0", "c0x3", "", "0", "", "", "0", "3", ""},
		// Still logging in: no user, no database, no wait.
		{"C", "", "", "none", "login", "127.0.0.1", "40004", "127.0.0.1", "6432", "2026-01-02 03:04:09 UTC", "2026-01-02 03:04:09 UTC",
			"0", "0", "0", "c0x4", "", "0", "", "", "0", "4", ""},
	}, rows)

	_, rows, f = show(t, handMade(), "SERVERS")
	require.Equal(t, []admin.Parts{admin.WithConnections}, f.parts)
	require.Equal(t, [][]string{ // application_name is the linked client's; a server has no id
		{"S", "alice", "app", "none", "active", "127.0.0.1", "5432", "127.0.0.1", "50000", "2026-01-02 03:04:05 UTC", "2026-01-02 03:04:05 UTC",
			"0", "0", "1", "s0x1", "c0x1", "4241", "", "billing-job", "3", "<null>"},
		{"S", "app_owner", "app", "none", "idle", "127.0.0.1", "5432", "127.0.0.1", "50001", "2026-01-02 03:05:05 UTC", "2026-01-02 03:05:05 UTC",
			"0", "0", "0", "s0x2", "", "4242", "", "", "0", "<null>"},
	}, rows)
}

func TestShowDatabasesUsersLists(t *testing.T) {
	cols, rows, f := show(t, handMade(), "DATABASES")
	require.Equal(t, []admin.Parts{admin.WithDatabases}, f.parts)
	require.Equal(t, []string{"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool",
		"pool_mode", "max_connections", "current_connections", "paused", "disabled"}, cols)
	require.Equal(t, [][]string{
		{"app", "db1", "5432", "app", "", "10", "1", "0", "transaction", "0", "5", "1", "0"},
		{"billing", "db2", "5433", "bills", "bob", "5", "1", "0", "session", "0", "1", "1", "1"},
		{"cmpool", "<null>", "0", "cmpool", "cmpool", "2", "0", "0", "statement", "0", "0", "0", "0"},
	}, rows)

	cols, rows, _ = show(t, handMade(), "USERS")
	require.Equal(t, []string{"name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections", "current_connections",
		"max_user_client_connections", "current_client_connections"}, cols)
	require.Equal(t, [][]string{{"alice", "", "", "<null>", "0", "5", "0", "3"}, {"bob", "", "", "<null>", "0", "1", "0", "0"}}, rows) // carol's pool was replaced

	_, rows, f = show(t, handMade(), "LISTS")
	require.Equal(t, []admin.Parts{admin.WithDatabases}, f.parts)
	require.Equal(t, [][]string{{"databases", "2"}, {"users", "2"}, {"peers", "2"}, {"pools", "2"}, {"peer_pools", "0"},
		{"free_clients", "0"}, {"used_clients", "4"}, {"login_clients", "1"}, {"free_servers", "2"}, {"used_servers", "4"},
		{"dns_names", "0"}, {"dns_zones", "0"}, {"dns_queries", "0"}, {"dns_pending", "0"}}, rows)
}

func TestShowStatePeersReplicasConfig(t *testing.T) {
	snap := handMade()
	_, rows, _ := show(t, snap, "STATE")
	require.Equal(t, [][]string{{"active", "no"}, {"paused", "app,billing"}, {"suspended", "no"}, {"shutting_down", "no"},
		{"uptime", "1h30m0s"}}, rows)
	snap.PausedAll, snap.ShuttingDown = true, true
	_, rows, _ = show(t, snap, "STATE")
	require.Equal(t, [][]string{{"active", "no"}, {"paused", "all"}, {"suspended", "no"}, {"shutting_down", "yes"},
		{"uptime", "1h30m0s"}}, rows)
	snap.PausedAll, snap.Paused = false, nil
	_, rows, _ = show(t, snap, "STATE")
	require.Equal(t, []string{"paused", "no"}, rows[1])
	require.Equal(t, []string{"active", "no"}, rows[0]) // shutting down
	snap.ShuttingDown = false
	_, rows, _ = show(t, snap, "STATE")
	require.Equal(t, []string{"active", "yes"}, rows[0])

	// With replicas: the primary as the monitor sees it, and where reads can go.
	snap.Primary = router.PrimaryStatus{Host: "10.0.0.1:5432", State: router.PrimaryOK}
	snap.Replicas = []router.ReplicaStatus{{Index: 0, Host: "10.0.0.2:5432", Role: "replica", State: "ok"}}
	_, rows, _ = show(t, snap, "STATE")
	require.Equal(t, [][]string{{"active", "yes"}, {"paused", "no"}, {"suspended", "no"}, {"shutting_down", "no"}, {"uptime", "1h30m0s"},
		{"primary", "10.0.0.1:5432"}, {"primary_state", "ok"}, {"usable_replicas", "1"}}, rows)
	snap.Primary = router.PrimaryStatus{Host: "10.0.0.1:5432", State: router.PrimaryDown, LastError: "connection refused",
		DownSince: snap.Now.Add(-1500 * time.Millisecond)}
	snap.Replicas[0].Role = router.RolePrimary
	_, rows, _ = show(t, snap, "STATE")
	require.Equal(t, [][]string{{"primary", "10.0.0.1:5432"}, {"primary_state", "down"}, {"primary_down_for", "1.5s"},
		{"primary_error", "connection refused"}, {"usable_replicas", "0"}, {"promoted_replicas", "10.0.0.2:5432"}}, rows[5:])
	snap.Primary, snap.Replicas = router.PrimaryStatus{}, handMade().Replicas

	_, rows, _ = show(t, snap, "PEERS")
	require.Equal(t, [][]string{{"1", "peer-one", "0", "0"}, {"2", "10.0.0.9", "6432", "0"}}, rows)

	_, rows, _ = show(t, snap, "REPLICAS")
	require.Equal(t, [][]string{{"0", "10.0.0.2:5432", "replica", "up", "16", "1500", "0/0", "0", "0", "2026-01-02 04:04:05 UTC", "boom"}}, rows)
	snap.Now = t0.Add(2 * time.Hour) // the ban is over
	_, rows, _ = show(t, snap, "REPLICAS")
	require.Equal(t, "<null>", rows[0][9])

	_, rows, f := show(t, snap, "CONFIG")
	require.Equal(t, []admin.Parts{admin.WithConfig}, f.parts)
	require.Equal(t, [][]string{{"listen_addr", "127.0.0.1:6432", "127.0.0.1:6432", "no"}, {"pool_mode", "transaction", "transaction", "yes"}}, rows)
}

func TestClientGroups(t *testing.T) {
	snap := handMade()
	require.Equal(t, []admin.ClientGroup{
		{Database: "app", User: "alice", Active: 1, Waiting: 2, MaxWait: 2500 * time.Millisecond},
		{Database: "cmpool", User: "cmpool", Active: 1},
	}, snap.ClientGroups())
	require.Equal(t, map[string]admin.Totals{
		"app":     {Xacts: 16, Queries: 28, Assignments: 10, Waits: 1, Received: 1100, Sent: 2200, XactTime: 15_000_000, QueryTime: 27_000, WaitTime: 2_003_000, ClientParses: 3, ServerParses: 2, Binds: 1},
		"billing": {Xacts: 2, Queries: 2, Assignments: 2},
	}, admin.TotalsByDatabase(snap.Pools))
}
