package integration

import (
	"fmt"
	"maps"
	"strings"
)

// containerInitScript is the primary's init script, run by the image's docker-entrypoint.sh
// after initdb: it appends the harness settings to postgresql.conf, writes pg_hba.conf, the
// per-node settings and the TLS files.
func containerInitScript(opts Options) (string, error) {
	settings := maps.Clone(opts.Settings)
	if settings == nil {
		settings = map[string]string{}
	}
	// A partition (DisconnectNode) leaves streaming connections open with nobody at the other
	// end: both sides give up on them after this, not the default minute.
	for k, v := range map[string]string{"wal_sender_timeout": "5s", "wal_receiver_timeout": "5s"} {
		if _, set := settings[k]; !set {
			settings[k] = v
		}
	}
	files := map[string]string{}
	if opts.TLSCert != nil {
		files["server.crt"] = string(opts.TLSCert)
		files["server.key"] = string(opts.TLSKey)
		settings["ssl"] = "on"
		settings["ssl_cert_file"] = "server.crt"
		settings["ssl_key_file"] = "server.key"
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Written by the cmpool integration harness.\nset -e\n")
	heredoc := func(op, name, content string) error {
		if strings.Contains("\n"+content+"\n", "\n"+heredocEnd+"\n") {
			return fmt.Errorf("integration: %s holds the line %s", name, heredocEnd)
		}
		if !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		fmt.Fprintf(&b, "cat %s \"$PGDATA/%s\" <<'%s'\n%s%s\n", op, name, heredocEnd, content, heredocEnd)
		return nil
	}
	if err := heredoc(">>", "postgresql.conf", serverConf("*", opts.Replicas, settings)); err != nil {
		return "", err
	}
	if err := heredoc(">", "pg_hba.conf", hbaConf(containerHBA(opts.HBA), opts.PasswordAuth, anyNets)); err != nil {
		return "", err
	}
	if err := heredoc(">", nodeConfFile, containerNodeConf("primary")); err != nil {
		return "", err
	}
	for _, name := range []string{"server.crt", "server.key"} {
		content, ok := files[name]
		if !ok {
			continue
		}
		if err := heredoc(">", name, content); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "chmod 600 \"$PGDATA/%s\"\n", name)
	}
	return b.String(), nil
}

// containerNodeConf holds the settings that differ between the nodes of the container backend,
// but for the port, which comes from $PGPORT.
func containerNodeConf(name string) string {
	return fmt.Sprintf("# Per-node settings, written by the cmpool integration harness.\ncluster_name = %s\n", quoteConf(name))
}

// containerReplicaEntrypoint is the shell script a replica's container runs as the postgres
// user: on its first start it clones the primary (host primaryHost on the Docker network,
// port primaryPort) with pg_basebackup -R and writes its own per-node settings; then it hands
// over to the image's docker-entrypoint.sh, which starts the server as a standby.
func containerReplicaEntrypoint(name, primaryHost string, primaryPort int) string {
	return fmt.Sprintf(`set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	pg_basebackup -h %s -p %d -U %s -D "$PGDATA" -R -X stream -c fast --no-sync
	cat > "$PGDATA/%s" <<'%s'
%s%s
	chmod 700 "$PGDATA"
fi
exec docker-entrypoint.sh postgres
`, shellQuote(primaryHost), primaryPort, shellQuote(Superuser), nodeConfFile, heredocEnd, containerNodeConf(name), heredocEnd)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// containerHBA is the HBA lines of Options for the container backend. A line for 127.0.0.1/32
// or ::1/128 means the test's own connections, which a server in a container sees coming from
// its Docker network's gateway: the address becomes samenet, the network's subnet.
func containerHBA(lines []string) []string {
	out := make([]string, len(lines))
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.HasPrefix(f[0], "host") && (f[3] == "127.0.0.1/32" || f[3] == "::1/128") {
			f[3] = "samenet"
			line = strings.Join(f, " ")
		}
		out[i] = line
	}
	return out
}
