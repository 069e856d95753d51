package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/protocol"
)

// The admin console: a virtual database named "cmpool" (alias "pgbouncer") that answers
// PgBouncer's console commands over the simple query protocol, with PgBouncer's column
// names and types, so that its tools (pgbouncer_exporter, scripts, psql habits) work
// unchanged. docs/operations.md is the reference.

// Version is cmpool's version, reported by SHOW VERSION and `cmpool version`.
var Version = "0.1.0-dev"

// AdminDatabase is the admin console's database name; PgBouncer's name is an alias.
const AdminDatabase = "cmpool"

// isAdminDatabase reports whether a client asking for database wants the console: a
// configured database of that name wins.
func (s *Server) isAdminDatabase(database string) bool {
	if database != AdminDatabase && database != "pgbouncer" {
		return false
	}
	_, configured := s.conf().Databases[database]
	return !configured
}

// adminRole is what a console user may do.
type adminRole int

const (
	roleNone  adminRole = iota
	roleStats           // SHOW commands
	roleAdmin           // everything
)

func (s *Server) adminRoleOf(user string) adminRole {
	cfg := s.conf()
	switch {
	case slices.Contains(cfg.AdminUsers, user):
		return roleAdmin
	case slices.Contains(cfg.StatsUsers, user):
		return roleStats
	}
	return roleNone
}

// adminStartup finishes the login of a console client, authenticated already.
func (c *clientSession) adminStartup() error {
	c.admin = true
	if c.srv.adminRoleOf(c.user) == roleNone {
		return protocol.NewFatal(protocol.CodeInvalidAuthorization,
			fmt.Sprintf("not allowed: user %q is in neither admin_users nor stats_users", c.user))
	}
	c.key = c.srv.unregisteredKey()
	var out []byte // after the AuthenticationOk that authenticate sent
	for _, p := range [][2]string{
		{"application_name", c.params["application_name"]},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO"},
		{"integer_datetimes", "on"},
		{"IntervalStyle", "postgres"},
		{"server_encoding", "UTF8"},
		{"server_version", "15.0"},
		{"standard_conforming_strings", "on"},
		{"TimeZone", "UTC"},
	} {
		out, _ = (&pgproto3.ParameterStatus{Name: p[0], Value: p[1]}).Encode(out)
	}
	out, _ = (&pgproto3.BackendKeyData{ProcessID: c.key.pid, SecretKey: c.key.secret[:]}).Encode(out)
	out = protocol.AppendReadyForQuery(out, 'I')
	_ = c.conn.SetDeadline(time.Time{})
	c.loggedIn.Store(true)
	return c.writeLocal(out)
}

// adminLoop serves console commands until the client leaves.
func (c *clientSession) adminLoop(ctx context.Context) error {
	discarding := false
	for {
		fr, err := c.fr.Next()
		if err != nil {
			if c.isClosing() {
				return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
			}
			var fe *protocol.FrameError
			if errors.As(err, &fe) || errors.Is(err, protocol.ErrMessageTooLarge) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, err.Error())
			}
			return err
		}
		switch fr.Type {
		case 'X':
			return nil
		case 'Q':
			msg, err := c.fr.Message()
			if err != nil {
				return err
			}
			out := c.runAdmin(ctx, string(msg[protocol.HeaderLen:len(msg)-1]))
			out = protocol.AppendReadyForQuery(out, 'I')
			if err := c.writeLocal(out); err != nil {
				return err
			}
		case 'S':
			if err := c.fr.Skip(); err != nil {
				return err
			}
			discarding = false
			if err := c.writeLocal(readyIdle); err != nil {
				return err
			}
		case 'P', 'B', 'D', 'E', 'C', 'H', 'F':
			if err := c.fr.Skip(); err != nil {
				return err
			}
			if discarding {
				continue
			}
			discarding = fr.Type != 'F'
			pe := protocol.NewError(protocol.CodeFeatureNotSupported, "the admin console supports only the simple query protocol")
			pe.Hint = "use simple queries (psql, lib/pq, or pgx with QueryExecModeSimpleProtocol)"
			out := protocol.AppendErrorResponse(nil, pe)
			if fr.Type == 'F' {
				out = protocol.AppendReadyForQuery(out, 'I')
			}
			if err := c.writeLocal(out); err != nil {
				return err
			}
		default:
			return protocol.NewFatal(protocol.CodeProtocolViolation, fmt.Sprintf("invalid frontend message type %q", fr.Type))
		}
		if c.isClosing() {
			return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
		}
	}
}

// runAdmin runs one query string of console commands separated by semicolons and returns
// the replies, without the ReadyForQuery. It stops at the first error.
func (c *clientSession) runAdmin(ctx context.Context, q string) []byte {
	var out []byte
	ran := false
	for stmt := range strings.SplitSeq(q, ";") {
		words := strings.Fields(stmt)
		if len(words) == 0 {
			continue
		}
		ran = true
		reply, pe := c.adminCommand(ctx, words)
		if pe != nil {
			c.noteError(nil, pe.Code)
			return protocol.AppendErrorResponse(out, pe)
		}
		out = append(out, reply...)
	}
	if !ran {
		out, _ = (&pgproto3.EmptyQueryResponse{}).Encode(out)
	}
	return out
}

// adminCommand runs one console command.
func (c *clientSession) adminCommand(ctx context.Context, words []string) ([]byte, *protocol.Error) {
	verb := strings.ToUpper(words[0])
	args := words[1:]
	role := c.srv.adminRoleOf(c.user)
	if verb != "SHOW" && role != roleAdmin {
		return nil, protocol.NewError(protocol.CodeInsufficientPrivilege,
			fmt.Sprintf("%s is for admin_users; user %q may only run SHOW commands", verb, c.user))
	}
	arg := func() (string, *protocol.Error) {
		switch len(args) {
		case 0:
			return "", nil
		case 1:
			return strings.Trim(args[0], `"`), nil
		}
		return "", protocol.NewError(protocol.CodeSyntaxError, fmt.Sprintf("%s takes at most one database name", verb))
	}
	switch verb {
	case "SHOW":
		if len(args) != 1 {
			return nil, protocol.NewError(protocol.CodeSyntaxError, "SHOW takes one word, such as SHOW POOLS; see SHOW HELP")
		}
		return c.adminShow(strings.ToUpper(args[0]))
	case "PAUSE":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if err := c.srv.pause(ctx, db); err != nil {
			return nil, protocol.NewError(protocol.CodeQueryCanceled, "PAUSE interrupted: "+err.Error())
		}
		c.srv.log.Info("paused by the admin console", "database", db, "user", c.user)
		return admin.CommandComplete("PAUSE"), nil
	case "RESUME":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if !c.srv.setPause(db, false, false) {
			return nil, protocol.NewError(protocol.CodeObjectNotInState, "not paused")
		}
		c.srv.log.Info("resumed by the admin console", "database", db, "user", c.user)
		return admin.CommandComplete("RESUME"), nil
	case "KILL":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if db == "" {
			return nil, protocol.NewError(protocol.CodeSyntaxError, "KILL needs a database name")
		}
		c.srv.kill(db)
		c.srv.log.Warn("database killed by the admin console: its clients were disconnected", "database", db, "user", c.user)
		return admin.CommandComplete("KILL"), nil
	case "DISABLE", "ENABLE":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if db == "" {
			return nil, protocol.NewError(protocol.CodeSyntaxError, verb+" needs a database name")
		}
		c.srv.setDisabled(db, verb == "DISABLE")
		c.srv.log.Info("database "+strings.ToLower(verb)+"d by the admin console", "database", db, "user", c.user)
		return admin.CommandComplete(verb), nil
	case "WAIT_CLOSE":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if err := c.srv.waitClose(ctx, db); err != nil {
			return nil, protocol.NewError(protocol.CodeQueryCanceled, "WAIT_CLOSE interrupted: "+err.Error())
		}
		return admin.CommandComplete("WAIT_CLOSE"), nil
	case "RECONNECT":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		c.srv.reconnect(db)
		return admin.CommandComplete("RECONNECT"), nil
	case "RELOAD":
		if len(args) > 0 {
			return nil, protocol.NewError(protocol.CodeSyntaxError, "RELOAD takes no arguments")
		}
		fixed, err := c.srv.reloadFromSource()
		if err != nil {
			return nil, protocol.NewError(protocol.CodeInvalidParameterValue, "RELOAD failed, the configuration in force is unchanged: "+err.Error())
		}
		var out []byte
		if len(fixed) > 0 {
			out = admin.AppendNotice(out, "these settings need a restart to change and were left as they are: "+strings.Join(fixed, ", "))
		}
		return append(out, admin.CommandComplete("RELOAD")...), nil
	case "SHUTDOWN":
		c.srv.log.Warn("shutdown requested from the admin console", "user", c.user)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), c.srv.conf().ShutdownTimeout)
			defer cancel()
			_ = c.srv.Shutdown(ctx)
		}()
		return admin.CommandComplete("SHUTDOWN"), nil
	}
	return nil, protocol.NewError(protocol.CodeSyntaxError, fmt.Sprintf("invalid command %q for the admin console; see SHOW HELP", strings.Join(words, " ")))
}

// adminShow answers SHOW what.
func (c *clientSession) adminShow(what string) ([]byte, *protocol.Error) {
	var t *admin.Table
	switch what {
	case "POOLS":
		t = c.srv.showPools()
	case "STATS":
		t = c.srv.showStats()
	case "STATS_TOTALS":
		t = c.srv.showStatsTotals(false)
	case "STATS_AVERAGES":
		t = c.srv.showStatsTotals(true)
	case "TOTALS":
		t = c.srv.showTotals()
	case "CLIENTS":
		t = c.srv.showClients()
	case "SERVERS":
		t = c.srv.showServers()
	case "DATABASES":
		t = c.srv.showDatabases()
	case "USERS":
		t = c.srv.showUsers()
	case "CONFIG":
		t = c.srv.showConfig()
	case "LISTS":
		t = c.srv.showLists()
	case "VERSION":
		t = admin.NewTable(admin.Column{Name: "version", OID: admin.OIDText})
		t.Row("cmpool " + Version)
	case "REPLICAS":
		t = c.srv.showReplicas()
	case "STATE":
		t = c.srv.showState()
	case "PEERS":
		t = c.srv.showPeers()
	case "HELP":
		out := admin.AppendNotice(nil, "Console usage\n"+
			"\tSHOW HELP|POOLS|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|CLIENTS|SERVERS|DATABASES|USERS|PEERS|CONFIG|LISTS|VERSION|REPLICAS|STATE\n"+
			"\tPAUSE [<db>]\n\tRESUME [<db>]\n\tDISABLE <db>\n\tENABLE <db>\n\tKILL <db>\n\tRECONNECT [<db>]\n\tWAIT_CLOSE [<db>]\n\tRELOAD\n\tSHUTDOWN")
		return append(out, admin.CommandComplete("SHOW")...), nil
	default:
		return nil, protocol.NewError(protocol.CodeSyntaxError, fmt.Sprintf("unknown SHOW command %q; see SHOW HELP", what))
	}
	return t.Encode("SHOW"), nil
}

// dbUser names a PgBouncer pool: a (database, user) pair. cmpool's pools are per
// backend too; the console adds the backends up.
type dbUser struct{ database, user string }

// poolGroups returns the pools grouped by (database, user), sorted.
func (s *Server) poolGroups() ([]dbUser, map[dbUser][]*backendPool) {
	groups := make(map[dbUser][]*backendPool)
	for _, bp := range s.poolsOf("") {
		k := dbUser{bp.key.database, bp.key.user}
		groups[k] = append(groups[k], bp)
	}
	keys := make([]dbUser, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].database != keys[j].database {
			return keys[i].database < keys[j].database
		}
		return keys[i].user < keys[j].user
	})
	return keys, groups
}

// clientCounts are the clients of one (database, user).
type clientCounts struct {
	active, waiting int
	maxWait         time.Duration
}

func (s *Server) countClients() map[dbUser]*clientCounts {
	now := nanotime()
	out := make(map[dbUser]*clientCounts)
	for _, c := range s.clientsOf("") {
		if !c.loggedIn.Load() {
			continue
		}
		k := dbUser{c.database, c.user}
		if c.admin {
			k = dbUser{AdminDatabase, AdminDatabase}
		}
		cc := out[k]
		if cc == nil {
			cc = &clientCounts{}
			out[k] = cc
		}
		if since := c.waitingSince.Load(); since != 0 {
			cc.waiting++
			cc.maxWait = max(cc.maxWait, time.Duration(now-since))
		} else {
			cc.active++
		}
	}
	return out
}

func (s *Server) showPools() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "database", OID: admin.OIDText}, admin.Column{Name: "user", OID: admin.OIDText},
		admin.Column{Name: "cl_active", OID: admin.OIDInt4}, admin.Column{Name: "cl_waiting", OID: admin.OIDInt4},
		admin.Column{Name: "cl_active_cancel_req", OID: admin.OIDInt4}, admin.Column{Name: "cl_waiting_cancel_req", OID: admin.OIDInt4},
		admin.Column{Name: "sv_active", OID: admin.OIDInt4}, admin.Column{Name: "sv_active_cancel", OID: admin.OIDInt4}, admin.Column{Name: "sv_being_canceled", OID: admin.OIDInt4},
		admin.Column{Name: "sv_idle", OID: admin.OIDInt4}, admin.Column{Name: "sv_used", OID: admin.OIDInt4}, admin.Column{Name: "sv_tested", OID: admin.OIDInt4}, admin.Column{Name: "sv_login", OID: admin.OIDInt4},
		admin.Column{Name: "maxwait", OID: admin.OIDInt4}, admin.Column{Name: "maxwait_us", OID: admin.OIDInt4}, admin.Column{Name: "pool_mode", OID: admin.OIDText})
	clients := s.countClients()
	keys, groups := s.poolGroups()
	seen := make(map[dbUser]bool)
	for _, k := range keys {
		seen[k] = true
		var active, idle, login int
		var cancelsActive, cancelsWaiting, cancelConns, beingCanceled int
		mode := ""
		for _, bp := range groups[k] {
			st := bp.p.Stat()
			active += int(st.AcquiredResources())
			idle += int(st.IdleResources())
			login += int(st.ConstructingResources())
			mode = string(bp.mode)
			w, a, n := bp.counters.cancels.snapshot()
			cancelsWaiting, cancelsActive, cancelConns = cancelsWaiting+w, cancelsActive+a, cancelConns+n
			beingCanceled += bp.beingCanceled()
		}
		cc := clients[k]
		if cc == nil {
			cc = &clientCounts{}
		}
		t.Row(k.database, k.user, cc.active, cc.waiting, cancelsActive, cancelsWaiting, active, cancelConns, beingCanceled, idle, 0, 0, login,
			int(cc.maxWait/time.Second), int((cc.maxWait%time.Second)/time.Microsecond), mode)
	}
	admin := dbUser{AdminDatabase, AdminDatabase}
	if cc := clients[admin]; cc != nil {
		t.Row(admin.database, admin.user, cc.active, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "statement")
	}
	// Clients whose pools do not exist yet (still logging in) are left out, as PgBouncer does.
	_ = seen
	return t
}

// poolTotals are a pool's cumulative counters; times in nanoseconds.
type poolTotals struct {
	xacts, queries, assignments, waits, received, sent int64
	xactTime, queryTime, waitTime                      int64
	clientParses, serverParses, binds                  int64
}

func (bp *backendPool) totals() poolTotals {
	pc := &bp.counters
	return poolTotals{
		xacts: pc.xacts.Load(), queries: pc.queries.Load(), assignments: bp.p.Stat().AcquireCount(),
		waits: pc.waits.Load(), received: pc.received.Load(), sent: pc.sent.Load(),
		xactTime: pc.xactTime.Load(), queryTime: pc.queryTime.Load(), waitTime: pc.waitTime.Load(),
		clientParses: pc.clientParses.Load(), serverParses: pc.serverParses.Load(), binds: pc.binds.Load(),
	}
}

func (a poolTotals) plus(b poolTotals) poolTotals {
	return poolTotals{a.xacts + b.xacts, a.queries + b.queries, a.assignments + b.assignments, a.waits + b.waits,
		a.received + b.received, a.sent + b.sent, a.xactTime + b.xactTime, a.queryTime + b.queryTime,
		a.waitTime + b.waitTime, a.clientParses + b.clientParses, a.serverParses + b.serverParses, a.binds + b.binds}
}

func (a poolTotals) minus(b poolTotals) poolTotals {
	return poolTotals{a.xacts - b.xacts, a.queries - b.queries, a.assignments - b.assignments, a.waits - b.waits,
		a.received - b.received, a.sent - b.sent, a.xactTime - b.xactTime, a.queryTime - b.queryTime,
		a.waitTime - b.waitTime, a.clientParses - b.clientParses, a.serverParses - b.serverParses, a.binds - b.binds}
}

// totalsByPool returns every pool's totals, including those of pools replaced by a reload
// or a promotion, so that no counter goes backwards.
func (s *Server) totalsByPool() map[poolKey]poolTotals {
	out := make(map[poolKey]poolTotals)
	for key, t := range s.retired.Load().byKey {
		out[key] = t
	}
	for _, bp := range s.poolsOf("") {
		out[bp.key] = out[bp.key].plus(bp.totals())
	}
	return out
}

// totalsByDatabase adds the pools' totals up by database.
func (s *Server) totalsByDatabase() map[string]poolTotals {
	out := make(map[string]poolTotals)
	for key, t := range s.totalsByPool() {
		out[key.database] = out[key.database].plus(t)
	}
	return out
}

// averages are per-second rates (and per-transaction or per-query times) over the last
// stats period, as PgBouncer's avg_* columns.
type averages struct {
	xacts, queries, assignments, recv, sent int64
	xactTime, queryTime, waitTime           int64 // µs per transaction, per query, per second
	clientParses, serverParses, binds       int64
}

func averagesOf(d poolTotals, period time.Duration) averages {
	secs := int64(period / time.Second)
	if secs <= 0 {
		secs = 1
	}
	a := averages{xacts: d.xacts / secs, queries: d.queries / secs, assignments: d.assignments / secs,
		recv: d.received / secs, sent: d.sent / secs, waitTime: d.waitTime / 1000 / secs,
		clientParses: d.clientParses / secs, serverParses: d.serverParses / secs, binds: d.binds / secs}
	if d.xacts > 0 {
		a.xactTime = d.xactTime / 1000 / d.xacts
	}
	if d.queries > 0 {
		a.queryTime = d.queryTime / 1000 / d.queries
	}
	return a
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (s *Server) showStats() *admin.Table {
	n := func(name string) admin.Column { return admin.Column{Name: name, OID: admin.OIDNumeric} }
	t := admin.NewTable(admin.Column{Name: "database", OID: admin.OIDText},
		n("total_xact_count"), n("total_query_count"), n("total_server_assignment_count"), n("total_received"), n("total_sent"),
		n("total_xact_time"), n("total_query_time"), n("total_wait_time"),
		n("total_client_parse_count"), n("total_server_parse_count"), n("total_bind_count"),
		n("avg_xact_count"), n("avg_query_count"), n("avg_server_assignment_count"), n("avg_recv"), n("avg_sent"),
		n("avg_xact_time"), n("avg_query_time"), n("avg_wait_time"),
		n("avg_client_parse_count"), n("avg_server_parse_count"), n("avg_bind_count"))
	totals := s.totalsByDatabase()
	avgs := s.statsAverages()
	for _, db := range sortedKeys(totals) {
		d, a := totals[db], avgs[db]
		t.Row(db, d.xacts, d.queries, d.assignments, d.received, d.sent, d.xactTime/1000, d.queryTime/1000, d.waitTime/1000,
			d.clientParses, d.serverParses, d.binds,
			a.xacts, a.queries, a.assignments, a.recv, a.sent, a.xactTime, a.queryTime, a.waitTime,
			a.clientParses, a.serverParses, a.binds)
	}
	return t
}

// showStatsTotals is SHOW STATS_TOTALS, or SHOW STATS_AVERAGES when avg is set.
func (s *Server) showStatsTotals(avg bool) *admin.Table {
	n := func(name string) admin.Column { return admin.Column{Name: name, OID: admin.OIDNumeric} }
	t := admin.NewTable(admin.Column{Name: "database", OID: admin.OIDText}, n("xact_count"), n("query_count"), n("server_assignment_count"),
		n("bytes_received"), n("bytes_sent"), n("xact_time"), n("query_time"), n("wait_time"),
		n("client_parse_count"), n("server_parse_count"), n("bind_count"))
	if avg {
		avgs := s.statsAverages()
		for _, db := range sortedKeys(avgs) {
			a := avgs[db]
			t.Row(db, a.xacts, a.queries, a.assignments, a.recv, a.sent, a.xactTime, a.queryTime, a.waitTime,
				a.clientParses, a.serverParses, a.binds)
		}
		return t
	}
	totals := s.totalsByDatabase()
	for _, db := range sortedKeys(totals) {
		d := totals[db]
		t.Row(db, d.xacts, d.queries, d.assignments, d.received, d.sent, d.xactTime/1000, d.queryTime/1000, d.waitTime/1000,
			d.clientParses, d.serverParses, d.binds)
	}
	return t
}

func (s *Server) showTotals() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "name", OID: admin.OIDText}, admin.Column{Name: "value", OID: admin.OIDNumeric})
	var sum poolTotals
	for _, d := range s.totalsByDatabase() {
		sum = sum.plus(d)
	}
	sum.xactTime, sum.queryTime, sum.waitTime = sum.xactTime/1000, sum.queryTime/1000, sum.waitTime/1000
	for _, kv := range []struct {
		k string
		v int64
	}{{"xact_count", sum.xacts}, {"query_count", sum.queries}, {"server_assignment_count", sum.assignments},
		{"bytes_received", sum.received}, {"bytes_sent", sum.sent}, {"xact_time", sum.xactTime},
		{"query_time", sum.queryTime}, {"wait_time", sum.waitTime}} {
		t.Row(kv.k, kv.v)
	}
	return t
}

// connColumns are the columns SHOW CLIENTS and SHOW SERVERS share.
func connColumns() []admin.Column {
	return []admin.Column{{Name: "type", OID: admin.OIDText}, {Name: "user", OID: admin.OIDText}, {Name: "database", OID: admin.OIDText}, {Name: "state", OID: admin.OIDText},
		{Name: "addr", OID: admin.OIDText}, {Name: "port", OID: admin.OIDInt4}, {Name: "local_addr", OID: admin.OIDText}, {Name: "local_port", OID: admin.OIDInt4},
		{Name: "connect_time", OID: admin.OIDText}, {Name: "request_time", OID: admin.OIDText}, {Name: "wait", OID: admin.OIDInt4}, {Name: "wait_us", OID: admin.OIDInt4},
		{Name: "close_needed", OID: admin.OIDInt4}, {Name: "ptr", OID: admin.OIDText}, {Name: "link", OID: admin.OIDText}, {Name: "remote_pid", OID: admin.OIDInt4},
		{Name: "tls", OID: admin.OIDText}, {Name: "application_name", OID: admin.OIDText}, {Name: "prepared_statements", OID: admin.OIDInt4}}
}

func splitAddr(a string) (string, int) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a, 0
	}
	port, _ := strconv.Atoi(a[i+1:])
	return strings.Trim(a[:i], "[]"), port
}

func clientPtr(c *clientSession) string { return fmt.Sprintf("c%p", c) }
func serverPtr(sc *serverConn) string   { return fmt.Sprintf("s%p", sc) }

func (s *Server) showClients() *admin.Table {
	t := admin.NewTable(connColumns()...)
	clients := s.clientsOf("")
	sort.Slice(clients, func(i, j int) bool { return clients[i].connectedAt.Before(clients[j].connectedAt) })
	now := nanotime()
	for _, c := range clients {
		// What startup writes (user, database, parameters) is read only once the login
		// is complete: loggedIn is set after it.
		in := c.loggedIn.Load()
		state := "active"
		var wait time.Duration
		switch since := c.waitingSince.Load(); {
		case !in:
			state = "login"
		case since != 0:
			state = "waiting"
			wait = time.Duration(now - since)
		}
		link, app, nstmts := "", "", 0
		if in {
			c.mu.Lock()
			if c.lease != nil {
				link = serverPtr(c.lease.sc)
			}
			app = c.params["application_name"]
			nstmts = len(c.stmts)
			c.mu.Unlock()
		}
		addr, port := splitAddr(c.conn.RemoteAddr().String())
		laddr, lport := splitAddr(c.conn.LocalAddr().String())
		req := c.connectedAt
		if r := c.requestAt.Load(); r != 0 {
			req = time.Unix(0, r)
		}
		closing := 0
		if c.isClosing() {
			closing = 1
		}
		user, database := "", ""
		if in {
			user, database = c.user, c.database
			if c.admin {
				database = AdminDatabase
			}
		}
		tlsInfo := ""
		if in && c.tlsConn != nil {
			st := c.tlsConn.ConnectionState()
			tlsInfo = tls.VersionName(st.Version) + "/" + tls.CipherSuiteName(st.CipherSuite)
		}
		t.Row("C", user, database, state, addr, port, laddr, lport, c.connectedAt, req,
			int(wait/time.Second), int((wait%time.Second)/time.Microsecond), closing, clientPtr(c), link,
			0, tlsInfo, app, nstmts)
	}
	return t
}

func (s *Server) showServers() *admin.Table {
	t := admin.NewTable(connColumns()...)
	type srv struct {
		bp *backendPool
		sc *serverConn
	}
	var all []srv
	for _, bp := range s.poolsOf("") {
		bp.conns.Range(func(k, _ any) bool {
			all = append(all, srv{bp, k.(*serverConn)})
			return true
		})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].sc.createdAt.Before(all[j].sc.createdAt) })
	for _, e := range all {
		state, link, app := "idle", "", ""
		if c := e.sc.linked.Load(); c != nil {
			state, link = "active", clientPtr(c)
		}
		addr, port := splitAddr(e.sc.conn.RemoteAddr().String())
		laddr, lport := splitAddr(e.sc.conn.LocalAddr().String())
		closing := 0
		if e.sc.createdAt.UnixNano() < e.bp.reconnectBefore.Load() {
			closing = 1
		}
		t.Row("S", e.bp.connCfg.User, e.bp.key.database, state, addr, port, laddr, lport, e.sc.createdAt, e.sc.createdAt,
			0, 0, closing, serverPtr(e.sc), link, e.sc.pid, "", app, e.sc.prepared.Len())
	}
	return t
}

func (s *Server) showDatabases() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "name", OID: admin.OIDText}, admin.Column{Name: "host", OID: admin.OIDText}, admin.Column{Name: "port", OID: admin.OIDInt4},
		admin.Column{Name: "database", OID: admin.OIDText}, admin.Column{Name: "force_user", OID: admin.OIDText}, admin.Column{Name: "pool_size", OID: admin.OIDInt4},
		admin.Column{Name: "min_pool_size", OID: admin.OIDInt4}, admin.Column{Name: "reserve_pool", OID: admin.OIDInt4}, admin.Column{Name: "pool_mode", OID: admin.OIDText},
		admin.Column{Name: "max_connections", OID: admin.OIDInt4}, admin.Column{Name: "current_connections", OID: admin.OIDInt4},
		admin.Column{Name: "paused", OID: admin.OIDInt4}, admin.Column{Name: "disabled", OID: admin.OIDInt4})
	cfg := s.conf()
	s.mu.Lock()
	primary := s.primaryCfg
	s.mu.Unlock()
	current := make(map[string]int)
	names := make(map[string]bool)
	for _, bp := range s.poolsOf("") {
		current[bp.key.database] += int(bp.p.Stat().TotalResources())
		names[bp.key.database] = true
	}
	for name := range cfg.Databases {
		names[name] = true
	}
	pauses := s.pauses.Load()
	disabled := s.disabledDBs()
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list)
	for _, name := range list {
		db := cfg.Databases[name]
		host, port, dbname := primary.Host, int(primary.Port), name
		if db.URL != "" {
			if pc, err := parseConnString(db.URL); err == nil {
				host, port, dbname = pc.Host, int(pc.Port), pc.Database
			}
		}
		if db.DBName != "" {
			dbname = db.DBName
		}
		size := cfg.DefaultPoolSize
		if db.PoolSize > 0 {
			size = db.PoolSize
		}
		mode := cfg.PoolMode
		if db.PoolMode != "" {
			mode = db.PoolMode
		}
		paused := 0
		if pauses.covers(name) {
			paused = 1
		}
		t.Row(name, host, port, dbname, db.User, size, cfg.MinPoolSize, 0, string(mode), 0, current[name], paused, boolInt(disabled[name]))
	}
	t.Row(AdminDatabase, nil, 0, AdminDatabase, AdminDatabase, 2, 0, 0, "statement", 0, 0, 0, 0)
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
func (s *Server) showPeers() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "peer_id", OID: admin.OIDInt4}, admin.Column{Name: "host", OID: admin.OIDText}, admin.Column{Name: "port", OID: admin.OIDInt4}, admin.Column{Name: "pool_size", OID: admin.OIDInt4})
	peers := s.conf().Peers
	ids := make([]int, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		host, port, err := net.SplitHostPort(peers[id])
		p, _ := strconv.Atoi(port)
		if err != nil {
			host, p = peers[id], 0
		}
		t.Row(id, host, p, 0)
	}
	return t
}

func (s *Server) showUsers() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "name", OID: admin.OIDText}, admin.Column{Name: "pool_mode", OID: admin.OIDText})
	users := make(map[string]bool)
	for _, bp := range s.poolsOf("") {
		users[bp.key.user] = true
	}
	for _, u := range sortedKeys(users) {
		t.Row(u, nil)
	}
	return t
}

func (s *Server) showLists() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "list", OID: admin.OIDText}, admin.Column{Name: "items", OID: admin.OIDInt4})
	keys, groups := s.poolGroups()
	dbs, users := make(map[string]bool), make(map[string]bool)
	var free, used int
	for _, k := range keys {
		dbs[k.database], users[k.user] = true, true
		for _, bp := range groups[k] {
			st := bp.p.Stat()
			free += int(st.IdleResources())
			used += int(st.AcquiredResources())
		}
	}
	for name := range s.conf().Databases {
		dbs[name] = true
	}
	var loggedIn, login int
	for _, c := range s.clientsOf("") {
		if c.loggedIn.Load() {
			loggedIn++
		} else {
			login++
		}
	}
	for _, kv := range []struct {
		k string
		v int
	}{{"databases", len(dbs)}, {"users", len(users)}, {"peers", len(s.conf().Peers)}, {"pools", len(keys)}, {"peer_pools", 0},
		{"free_clients", 0}, {"used_clients", loggedIn}, {"login_clients", login},
		{"free_servers", free}, {"used_servers", used},
		{"dns_names", 0}, {"dns_zones", 0}, {"dns_queries", 0}, {"dns_pending", 0}} {
		t.Row(kv.k, kv.v)
	}
	return t
}

func (s *Server) showReplicas() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "index", OID: admin.OIDInt4}, admin.Column{Name: "host", OID: admin.OIDText}, admin.Column{Name: "role", OID: admin.OIDText}, admin.Column{Name: "state", OID: admin.OIDText},
		admin.Column{Name: "lag_bytes", OID: admin.OIDInt8}, admin.Column{Name: "lag_ms", OID: admin.OIDInt8}, admin.Column{Name: "replay_lsn", OID: admin.OIDText},
		admin.Column{Name: "routed", OID: admin.OIDInt8}, admin.Column{Name: "outstanding", OID: admin.OIDInt8}, admin.Column{Name: "banned_until", OID: admin.OIDText}, admin.Column{Name: "last_error", OID: admin.OIDText})
	rs := s.rs()
	if rs == nil {
		return t
	}
	for _, r := range rs.Snapshot() {
		var banned any
		if !r.BannedUntil.IsZero() && time.Now().Before(r.BannedUntil) {
			banned = r.BannedUntil
		}
		t.Row(r.Index, r.Host, r.Role, r.State, r.LagBytes, r.LagTime.Milliseconds(), r.ReplayLSN.String(),
			r.Routed, r.Outstanding, banned, r.LastError)
	}
	return t
}

func (s *Server) showState() *admin.Table {
	t := admin.NewTable(admin.Column{Name: "key", OID: admin.OIDText}, admin.Column{Name: "value", OID: admin.OIDText})
	p := s.pauses.Load()
	paused := "no"
	switch {
	case p != nil && p.all:
		paused = "all"
	case p != nil:
		paused = strings.Join(sortedKeys(p.dbs), ",")
	}
	shutting := "no"
	if s.closing.Load() {
		shutting = "yes"
	}
	t.Row("paused", paused)
	t.Row("shutting_down", shutting)
	t.Row("uptime", time.Since(s.started).Round(time.Second).String())
	return t
}
