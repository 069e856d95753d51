package integration

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// serverConf is appended to the primary's postgresql.conf; replicas inherit it. The include of the
// per-node file comes last so that port and socket directory cannot be overridden. listen is
// listen_addresses.
func serverConf(listen string, replicas int, settings map[string]string) string {
	var b strings.Builder
	b.WriteString("\n# Added by the cmpool integration harness.\n")
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(v)) }
	set("listen_addresses", listen)
	set("wal_level", "replica")
	set("max_wal_senders", strconv.Itoa(max(10, replicas+3))) // every replica, and a pg_basebackup
	set("hot_standby", "on")
	set("max_connections", "300")
	set("fsync", "off")
	set("synchronous_commit", "off")
	set("full_page_writes", "off")
	set("shared_buffers", "128MB")
	set("logging_collector", "off")
	set("wal_retrieve_retry_interval", "500ms") // a replica reconnects quickly to a restarted primary
	// Keep WAL for replicas that start streaming after later base backups' checkpoints
	// have passed them (no slots: a stopped replica must not fill the disk).
	set("wal_keep_size", "256MB")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		set(k, settings[k])
	}
	fmt.Fprintf(&b, "include_if_exists = %s\n", quoteConf(nodeConfFile))
	return b.String()
}

// nodeConf holds the settings that differ between nodes.
func nodeConf(n *Node) string {
	return fmt.Sprintf("# Per-node settings, written by the cmpool integration harness.\nport = %d\nunix_socket_directories = %s\ncluster_name = %s\n",
		n.Port, quoteConf(n.SocketDir), quoteConf(n.Name))
}

// Client networks trusted by pg_hba.conf: loopback for the local backend; any address for the
// container backend, whose clients come through the Docker network and its port mapping.
var (
	loopbackNets = []string{"127.0.0.1/32", "::1/128"}
	anyNets      = []string{"0.0.0.0/0", "::/0"}
)

// hbaConf is the primary's pg_hba.conf: the extra lines first, then trust for Unix-socket
// connections and TCP ones from nets, replication included. With passwordAuth, TCP logins of
// every user but the superuser (and replication) use scram-sha-256.
func hbaConf(extra []string, passwordAuth bool, nets []string) string {
	var b strings.Builder
	b.WriteString("# Written by the cmpool integration harness.\n")
	for _, line := range extra {
		b.WriteString(line + "\n")
	}
	line := func(typ, db, user, addr, method string) {
		fmt.Fprintf(&b, "%-7s %-12s %-10s %-13s %s\n", typ, db, user, addr, method)
	}
	if passwordAuth {
		for _, n := range nets {
			line("host", "all", Superuser, n, "trust")
			line("host", "replication", "all", n, "trust")
		}
		for _, n := range nets {
			line("host", "all", "all", n, "scram-sha-256")
		}
	}
	line("local", "all", "all", "", "trust")
	for _, n := range nets {
		line("host", "all", "all", n, "trust")
	}
	line("local", "replication", "all", "", "trust")
	for _, n := range nets {
		line("host", "replication", "all", n, "trust")
	}
	return b.String()
}

func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}
