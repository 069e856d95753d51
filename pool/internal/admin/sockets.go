package admin

import (
	"runtime"
	"sort"
)

// socketDebugColumns are the columns SHOW SOCKETS adds to SHOW CLIENTS' in PgBouncer:
// the positions in its packet buffers. cmpool reads and writes through buffers of its
// own that it does not expose, and shows 0.
var socketDebugColumns = []column{{"recv_pos", oidInt4}, {"pkt_pos", oidInt4}, {"pkt_remain", oidInt4},
	{"send_pos", oidInt4}, {"send_remain", oidInt4}, {"pkt_avail", oidInt4}, {"send_avail", oidInt4}}

// showSockets is SHOW SOCKETS, or SHOW ACTIVE_SOCKETS when activeOnly is set: every
// client and server socket with SHOW CLIENTS' columns and PgBouncer's list names as the
// state (cl_active, cl_waiting, cl_login, sv_active, sv_idle). The active ones are the
// sockets with something in flight: clients logging in, waiting for a server or linked
// to one, and the servers lent to a client; idle clients and servers are left out.
func showSockets(s *Snapshot, activeOnly bool) *table {
	t := newTable(append(connColumns(), socketDebugColumns...)...)
	zeros := make([]any, len(socketDebugColumns))
	for i := range zeros {
		zeros[i] = 0
	}
	for _, c := range s.sortedClients() {
		state := "cl_active"
		switch {
		case !c.LoggedIn:
			state = "cl_login"
		case c.Waiting:
			state = "cl_waiting"
		}
		if activeOnly && state == "cl_active" && c.Link == "" {
			continue // idle between transactions
		}
		t.row(append(clientRow(&c, state), zeros...)...)
	}
	apps := s.applicationNames()
	for _, sc := range s.sortedServers() {
		state := "sv_idle"
		if sc.Active {
			state = "sv_active"
		}
		if activeOnly && !sc.Active {
			continue
		}
		t.row(append(serverRow(&sc, state, apps[sc.Link]), zeros...)...)
	}
	return t
}

// readMemStats reads the Go runtime's memory statistics.
var readMemStats = runtime.ReadMemStats

// showMem is SHOW MEM: PgBouncer lists its slab caches; cmpool lists the Go runtime's
// memory classes, in bytes. size is the average size of a heap object (0 for the other
// classes), used the bytes in use, free the bytes held from the operating system and
// ready for reuse, memtotal the bytes held from the operating system (used + free).
func showMem() *table {
	t := newTable(column{"name", oidText}, column{"size", oidInt8}, column{"used", oidInt8},
		column{"free", oidInt8}, column{"memtotal", oidInt8})
	var m runtime.MemStats
	readMemStats(&m)
	var objSize uint64
	if m.HeapObjects > 0 {
		objSize = m.HeapAlloc / m.HeapObjects
	}
	heapHeld := m.HeapSys - m.HeapReleased
	rows := []struct {
		name              string
		size, used, total uint64
	}{
		{"heap", objSize, m.HeapAlloc, heapHeld},
		{"stack", 0, m.StackInuse, m.StackSys},
		{"mspan", 0, m.MSpanInuse, m.MSpanSys},
		{"mcache", 0, m.MCacheInuse, m.MCacheSys},
		{"gc", 0, m.GCSys, m.GCSys},
		{"other", 0, m.OtherSys + m.BuckHashSys, m.OtherSys + m.BuckHashSys},
	}
	var used, total uint64
	for _, r := range rows {
		t.row(r.name, r.size, r.used, r.total-min(r.used, r.total), r.total)
		used += r.used
		total += r.total
	}
	t.row("total", uint64(0), used, total-min(used, total), total)
	return t
}

// showPeerPools is SHOW PEER_POOLS: one row per [peers] entry. cmpool forwards a cancel
// request to a peer over a connection opened for it and keeps no pool per peer, so the
// counts are 0; the cancels in flight are counted in SHOW POOLS.
func showPeerPools(s *Snapshot) *table {
	t := newTable(column{"peer_id", oidInt4}, column{"cl_active_cancel_req", oidInt4}, column{"cl_waiting_cancel_req", oidInt4},
		column{"sv_active_cancel", oidInt4}, column{"sv_login", oidInt4})
	ids := make([]int, 0, len(s.Peers))
	for id := range s.Peers {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		t.row(id, 0, 0, 0, 0)
	}
	return t
}

// showDNSHosts is SHOW DNS_HOSTS, always empty: cmpool keeps no DNS cache; a server
// connection resolves its host name as it is opened.
func showDNSHosts(*Snapshot) *table {
	return newTable(column{"hostname", oidText}, column{"ttl", oidInt8}, column{"addrs", oidText})
}

// showDNSZones is SHOW DNS_ZONES, always empty, as SHOW DNS_HOSTS.
func showDNSZones(*Snapshot) *table {
	return newTable(column{"zonename", oidText}, column{"serial", oidInt8}, column{"count", oidInt4})
}
