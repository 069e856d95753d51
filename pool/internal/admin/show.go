package admin

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// help is SHOW HELP's notice.
const help = "Console usage\n" +
	"\tSHOW HELP|POOLS|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|CLIENTS|SERVERS|SOCKETS|ACTIVE_SOCKETS|DATABASES|USERS|PEERS|PEER_POOLS|CONFIG|LISTS|MEM|DNS_HOSTS|DNS_ZONES|VERSION|REPLICAS|STATE\n" +
	"\tSET key = arg\n" +
	"\tPAUSE [<db>]\n\tRESUME [<db>]\n\tDISABLE <db>\n\tENABLE <db>\n\tKILL <db>\n\tKILL_CLIENT <id>\n\tRECONNECT [<db>]\n\tWAIT_CLOSE [<db>]\n\tRELOAD\n" +
	"\tSHUTDOWN\n\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS"

// shows are the SHOW commands that render a snapshot, with the parts each needs.
var shows = map[string]struct {
	parts  Parts
	render func(*Snapshot) *table
}{
	"POOLS":          {0, showPools},
	"STATS":          {0, showStats},
	"STATS_TOTALS":   {0, func(s *Snapshot) *table { return showStatsTotals(s, false) }},
	"STATS_AVERAGES": {0, func(s *Snapshot) *table { return showStatsTotals(s, true) }},
	"TOTALS":         {0, showTotals},
	"CLIENTS":        {WithConnections, showClients},
	"SERVERS":        {WithConnections, showServers},
	"DATABASES":      {WithDatabases, showDatabases},
	"USERS":          {0, showUsers},
	"CONFIG":         {WithConfig, showConfig},
	"LISTS":          {WithDatabases, showLists},
	"REPLICAS":       {0, showReplicas},
	"STATE":          {0, showState},
	"PEERS":          {0, showPeers},
	"PEER_POOLS":     {0, showPeerPools},
	"SOCKETS":        {WithConnections, func(s *Snapshot) *table { return showSockets(s, false) }},
	"ACTIVE_SOCKETS": {WithConnections, func(s *Snapshot) *table { return showSockets(s, true) }},
	"DNS_HOSTS":      {0, showDNSHosts},
	"DNS_ZONES":      {0, showDNSZones},
}

// show answers SHOW what.
func (c *Console) show(what string) ([]byte, *protocol.Error) {
	switch what {
	case "VERSION":
		t := newTable(column{"version", oidText})
		t.row("cmpool " + c.Version)
		return t.encode("SHOW"), nil
	case "HELP":
		return append(appendNotice(nil, help), commandComplete("SHOW")...), nil
	case "MEM":
		return showMem().encode("SHOW"), nil
	case "FDS":
		pe := protocol.NewError(protocol.CodeFeatureNotSupported,
			"SHOW FDS is not supported: it exists for PgBouncer's online restart, which passes sockets to a new process; cmpool does not")
		pe.Hint = "SHOW SOCKETS lists the client and server sockets; to restart with no refused connection, run a second cmpool with so_reuseport and send SHUTDOWN WAIT_FOR_CLIENTS (or SIGTERM) to the old one"
		return nil, pe
	}
	if v, ok := fakeParams[strings.ToLower(what)]; ok {
		t := newTable(column{strings.ToLower(what), oidText})
		t.row(v)
		return t.encode("SHOW"), nil
	}
	sh, ok := shows[what]
	if !ok {
		return nil, protocol.NewError(protocol.CodeSyntaxError, fmt.Sprintf("unknown SHOW command %q; see SHOW HELP", what))
	}
	return sh.render(c.Ctl.Snapshot(sh.parts)).encode("SHOW"), nil
}

func showPools(s *Snapshot) *table {
	t := newTable(column{"database", oidText}, column{"user", oidText},
		column{"cl_active", oidInt4}, column{"cl_waiting", oidInt4},
		column{"cl_active_cancel_req", oidInt4}, column{"cl_waiting_cancel_req", oidInt4},
		column{"sv_active", oidInt4}, column{"sv_active_cancel", oidInt4}, column{"sv_being_canceled", oidInt4},
		column{"sv_idle", oidInt4}, column{"sv_used", oidInt4}, column{"sv_tested", oidInt4}, column{"sv_login", oidInt4},
		column{"maxwait", oidInt4}, column{"maxwait_us", oidInt4}, column{"pool_mode", oidText})
	type key struct{ database, user string }
	clients := make(map[key]ClientGroup)
	for _, g := range s.ClientGroups() {
		clients[key{g.Database, g.User}] = g
	}
	for _, g := range s.PoolGroups() {
		cc := clients[key{g.Database, g.User}]
		t.row(g.Database, g.User, cc.Active, cc.Waiting, g.CancelsActive, g.CancelsWaiting, g.Active, g.CancelConns, g.BeingCanceled,
			g.Idle, 0, 0, g.Login, int(cc.MaxWait/time.Second), int((cc.MaxWait%time.Second)/time.Microsecond), g.Mode)
	}
	// Clients whose pools do not exist yet (still logging in) are left out, as PgBouncer does.
	if cc, ok := clients[key{DatabaseName, DatabaseName}]; ok {
		t.row(DatabaseName, DatabaseName, cc.Active, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "statement")
	}
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func showStats(s *Snapshot) *table {
	n := func(name string) column { return column{name, oidNumeric} }
	t := newTable(column{"database", oidText},
		n("total_xact_count"), n("total_query_count"), n("total_server_assignment_count"), n("total_received"), n("total_sent"),
		n("total_xact_time"), n("total_query_time"), n("total_wait_time"),
		n("total_client_parse_count"), n("total_server_parse_count"), n("total_bind_count"),
		n("avg_xact_count"), n("avg_query_count"), n("avg_server_assignment_count"), n("avg_recv"), n("avg_sent"),
		n("avg_xact_time"), n("avg_query_time"), n("avg_wait_time"),
		n("avg_client_parse_count"), n("avg_server_parse_count"), n("avg_bind_count"))
	totals := TotalsByDatabase(s.Pools)
	avgs := s.averages(totals)
	for _, db := range sortedKeys(totals) {
		d, a := totals[db], avgs[db]
		t.row(db, d.Xacts, d.Queries, d.Assignments, d.Received, d.Sent, d.XactTime/1000, d.QueryTime/1000, d.WaitTime/1000,
			d.ClientParses, d.ServerParses, d.Binds,
			a.Xacts, a.Queries, a.Assignments, a.Recv, a.Sent, a.XactTime, a.QueryTime, a.WaitTime,
			a.ClientParses, a.ServerParses, a.Binds)
	}
	return t
}

// showStatsTotals is SHOW STATS_TOTALS, or SHOW STATS_AVERAGES when avg is set.
func showStatsTotals(s *Snapshot, avg bool) *table {
	n := func(name string) column { return column{name, oidNumeric} }
	t := newTable(column{"database", oidText}, n("xact_count"), n("query_count"), n("server_assignment_count"),
		n("bytes_received"), n("bytes_sent"), n("xact_time"), n("query_time"), n("wait_time"),
		n("client_parse_count"), n("server_parse_count"), n("bind_count"))
	totals := TotalsByDatabase(s.Pools)
	if avg {
		avgs := s.averages(totals)
		for _, db := range sortedKeys(avgs) {
			a := avgs[db]
			t.row(db, a.Xacts, a.Queries, a.Assignments, a.Recv, a.Sent, a.XactTime, a.QueryTime, a.WaitTime,
				a.ClientParses, a.ServerParses, a.Binds)
		}
		return t
	}
	for _, db := range sortedKeys(totals) {
		d := totals[db]
		t.row(db, d.Xacts, d.Queries, d.Assignments, d.Received, d.Sent, d.XactTime/1000, d.QueryTime/1000, d.WaitTime/1000,
			d.ClientParses, d.ServerParses, d.Binds)
	}
	return t
}

func showTotals(s *Snapshot) *table {
	t := newTable(column{"name", oidText}, column{"value", oidNumeric})
	var sum Totals
	for _, d := range TotalsByDatabase(s.Pools) {
		sum = sum.Plus(d)
	}
	sum.XactTime, sum.QueryTime, sum.WaitTime = sum.XactTime/1000, sum.QueryTime/1000, sum.WaitTime/1000
	for _, kv := range []struct {
		k string
		v int64
	}{{"xact_count", sum.Xacts}, {"query_count", sum.Queries}, {"server_assignment_count", sum.Assignments},
		{"bytes_received", sum.Received}, {"bytes_sent", sum.Sent}, {"xact_time", sum.XactTime},
		{"query_time", sum.QueryTime}, {"wait_time", sum.WaitTime}} {
		t.row(kv.k, kv.v)
	}
	return t
}

// connColumns are the columns SHOW CLIENTS and SHOW SERVERS share.
func connColumns() []column {
	return []column{{"type", oidText}, {"user", oidText}, {"database", oidText}, {"replication", oidText}, {"state", oidText},
		{"addr", oidText}, {"port", oidInt4}, {"local_addr", oidText}, {"local_port", oidInt4},
		{"connect_time", oidText}, {"request_time", oidText}, {"wait", oidInt4}, {"wait_us", oidInt4},
		{"close_needed", oidInt4}, {"ptr", oidText}, {"link", oidText}, {"remote_pid", oidInt4},
		{"tls", oidText}, {"application_name", oidText}, {"prepared_statements", oidInt4}, {"id", oidInt8}}
}

func splitAddr(a string) (string, int) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a, 0
	}
	port, _ := strconv.Atoi(a[i+1:])
	return strings.Trim(a[:i], "[]"), port
}

func showClients(s *Snapshot) *table {
	t := newTable(append(connColumns(), column{"pinned", oidText})...)
	for _, c := range s.sortedClients() {
		t.row(append(clientRow(&c, clientState(&c)), strings.Join(c.Pinned, ","))...)
	}
	return t
}

// sortedClients returns the clients by connect time.
func (s *Snapshot) sortedClients() []Client {
	clients := slices.Clone(s.Clients)
	sort.Slice(clients, func(i, j int) bool { return clients[i].ConnectTime.Before(clients[j].ConnectTime) })
	return clients
}

// clientState is SHOW CLIENTS' state of c.
func clientState(c *Client) string {
	switch {
	case !c.LoggedIn:
		return "login"
	case c.Waiting:
		return "waiting"
	}
	return "active"
}

// clientRow is c's row of the connection columns, with state.
func clientRow(c *Client, state string) []any {
	var wait time.Duration
	if c.LoggedIn && c.Waiting {
		wait = c.Wait
	}
	addr, port := splitAddr(c.Addr)
	laddr, lport := splitAddr(c.LocalAddr)
	return []any{"C", c.User, c.Database, "none", state, addr, port, laddr, lport, c.ConnectTime, c.RequestTime,
		int(wait / time.Second), int((wait % time.Second) / time.Microsecond), boolInt(c.CloseNeeded), c.Ptr, c.Link,
		0, c.TLS, c.ApplicationName, c.PreparedStatements, c.ID}
}

func showServers(s *Snapshot) *table {
	t := newTable(connColumns()...)
	apps := s.applicationNames()
	for _, sc := range s.sortedServers() {
		state := "idle"
		if sc.Active {
			state = "active"
		}
		t.row(serverRow(&sc, state, apps[sc.Link])...)
	}
	return t
}

// applicationNames maps each client's ptr to its application_name, for the servers
// linked to it.
func (s *Snapshot) applicationNames() map[string]string {
	out := make(map[string]string)
	for _, c := range s.Clients {
		if c.Ptr != "" {
			out[c.Ptr] = c.ApplicationName
		}
	}
	return out
}

// sortedServers returns the servers by connect time.
func (s *Snapshot) sortedServers() []ServerConn {
	servers := slices.Clone(s.Servers)
	sort.Slice(servers, func(i, j int) bool { return servers[i].ConnectTime.Before(servers[j].ConnectTime) })
	return servers
}

// serverRow is sc's row of the connection columns, with state and the application_name
// of the client linked to it. A server connection has no id of its own: ptr names it.
func serverRow(sc *ServerConn, state, applicationName string) []any {
	addr, port := splitAddr(sc.Addr)
	laddr, lport := splitAddr(sc.LocalAddr)
	return []any{"S", sc.User, sc.Database, "none", state, addr, port, laddr, lport, sc.ConnectTime, sc.ConnectTime,
		0, 0, boolInt(sc.CloseNeeded), sc.Ptr, sc.Link, sc.RemotePID, "", applicationName, sc.PreparedStatements, nil}
}

func showDatabases(s *Snapshot) *table {
	t := newTable(column{"name", oidText}, column{"host", oidText}, column{"port", oidInt4},
		column{"database", oidText}, column{"force_user", oidText}, column{"pool_size", oidInt4},
		column{"min_pool_size", oidInt4}, column{"reserve_pool", oidInt4}, column{"pool_mode", oidText},
		column{"max_connections", oidInt4}, column{"current_connections", oidInt4},
		column{"paused", oidInt4}, column{"disabled", oidInt4})
	current := make(map[string]int)
	for _, p := range s.Pools {
		current[p.Database] += p.Servers // zero for a pool that was replaced
	}
	dbs := slices.Clone(s.Databases)
	sort.Slice(dbs, func(i, j int) bool { return dbs[i].Name < dbs[j].Name })
	for _, db := range dbs {
		t.row(db.Name, db.Host, db.Port, db.DBName, db.ForceUser, db.PoolSize, db.MinPoolSize, db.ReservePool, db.Mode, db.MaxConnections,
			current[db.Name], boolInt(s.covers(db.Name)), boolInt(db.Disabled))
	}
	t.row(DatabaseName, nil, 0, DatabaseName, DatabaseName, 2, 0, 0, "statement", 0, 0, 0, 0)
	return t
}

// boolInt is 1 for true, as PgBouncer's flag columns.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// showPeers lists the [peers] in force (PgBouncer's SHOW PEERS). pool_size is 0: cmpool
// opens a connection per forwarded cancel request and keeps none.
func showPeers(s *Snapshot) *table {
	t := newTable(column{"peer_id", oidInt4}, column{"host", oidText}, column{"port", oidInt4}, column{"pool_size", oidInt4})
	ids := make([]int, 0, len(s.Peers))
	for id := range s.Peers {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		host, port, err := net.SplitHostPort(s.Peers[id])
		p, _ := strconv.Atoi(port)
		if err != nil {
			host, p = s.Peers[id], 0
		}
		t.row(id, host, p, 0)
	}
	return t
}

// users returns the users of the live pools.
func (s *Snapshot) users() map[string]bool {
	users := make(map[string]bool)
	for _, p := range s.Pools {
		if p.Live {
			users[p.User] = true
		}
	}
	return users
}

// showUsers is SHOW USERS with PgBouncer 1.25's columns. cmpool has no per-user pool
// size, reserve or mode (empty and NULL, as PgBouncer shows a user without its own) and
// no per-user limits (0); current_connections counts the user's server connections,
// current_client_connections its logged-in clients.
func showUsers(s *Snapshot) *table {
	t := newTable(column{"name", oidText}, column{"pool_size", oidText}, column{"reserve_pool_size", oidText},
		column{"pool_mode", oidText}, column{"max_user_connections", oidInt4}, column{"current_connections", oidInt4},
		column{"max_user_client_connections", oidInt4}, column{"current_client_connections", oidInt4})
	servers := make(map[string]int)
	for _, p := range s.Pools {
		servers[p.User] += p.Servers // zero for a pool that was replaced
	}
	clients := make(map[string]int)
	for _, c := range s.Clients {
		if c.LoggedIn && !c.Admin {
			clients[c.User]++
		}
	}
	for _, u := range sortedKeys(s.users()) {
		t.row(u, "", "", nil, 0, servers[u], 0, clients[u])
	}
	return t
}

func showConfig(s *Snapshot) *table {
	t := newTable(column{"key", oidText}, column{"value", oidText}, column{"default", oidText}, column{"changeable", oidText})
	for _, e := range s.Config {
		ch := "yes"
		if !e.Changeable {
			ch = "no"
		}
		t.row(e.Key, e.Value, e.Default, ch)
	}
	return t
}

func showLists(s *Snapshot) *table {
	t := newTable(column{"list", oidText}, column{"items", oidInt4})
	groups := s.PoolGroups()
	var free, used int
	for _, g := range groups {
		free += g.Idle
		used += g.Active
	}
	var loggedIn, login int
	for _, c := range s.Clients {
		if c.LoggedIn {
			loggedIn++
		} else {
			login++
		}
	}
	for _, kv := range []struct {
		k string
		v int
	}{{"databases", len(s.Databases)}, {"users", len(s.users())}, {"peers", len(s.Peers)}, {"pools", len(groups)}, {"peer_pools", 0},
		{"free_clients", 0}, {"used_clients", loggedIn}, {"login_clients", login},
		{"free_servers", free}, {"used_servers", used},
		{"dns_names", 0}, {"dns_zones", 0}, {"dns_queries", 0}, {"dns_pending", 0}} {
		t.row(kv.k, kv.v)
	}
	return t
}

func showReplicas(s *Snapshot) *table {
	t := newTable(column{"index", oidInt4}, column{"host", oidText}, column{"role", oidText}, column{"state", oidText},
		column{"lag_bytes", oidInt8}, column{"lag_ms", oidInt8}, column{"replay_lsn", oidText},
		column{"routed", oidInt8}, column{"outstanding", oidInt8}, column{"banned_until", oidText}, column{"last_error", oidText})
	for _, r := range s.Replicas {
		var banned any
		if !r.BannedUntil.IsZero() && s.Now.Before(r.BannedUntil) {
			banned = r.BannedUntil
		}
		t.row(r.Index, r.Host, r.Role, r.State, r.LagBytes, r.LagTime.Milliseconds(), r.ReplayLSN.String(),
			r.Routed, r.Outstanding, banned, r.LastError)
	}
	return t
}

func showState(s *Snapshot) *table {
	t := newTable(column{"key", oidText}, column{"value", oidText})
	paused := "no"
	switch {
	case s.PausedAll:
		paused = "all"
	case len(s.Paused) > 0:
		paused = strings.Join(s.Paused, ",")
	}
	shutting := "no"
	if s.ShuttingDown {
		shutting = "yes"
	}
	active := "yes"
	if paused != "no" || s.ShuttingDown {
		active = "no"
	}
	t.row("active", active)
	t.row("paused", paused)
	t.row("suspended", "no")
	t.row("shutting_down", shutting)
	t.row("uptime", s.Uptime.Round(time.Second).String())
	if p := s.Primary; p.Host != "" {
		// With replicas, the monitor's view of the primary, and where reads and writes go.
		t.row("primary", p.Host)
		t.row("primary_state", p.State)
		if p.State == router.PrimaryDown {
			t.row("primary_down_for", s.Now.Sub(p.DownSince).Round(time.Millisecond).String())
			t.row("primary_error", p.LastError)
		}
		usable := 0
		var promoted []string
		for _, r := range s.Replicas {
			switch {
			case r.Role == router.RolePrimary:
				promoted = append(promoted, r.Host)
			case r.State == router.ReplicaOK:
				usable++
			}
		}
		t.row("usable_replicas", strconv.Itoa(usable))
		if len(promoted) > 0 {
			t.row("promoted_replicas", strings.Join(promoted, ","))
		}
	}
	return t
}
