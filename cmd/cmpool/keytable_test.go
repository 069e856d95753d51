package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// pgbouncer125Keys are the keys of PgBouncer 1.25's doc/config.md, by section.
var pgbouncer125Keys = map[string][]string{
	"[pgbouncer]": strings.Fields(`logfile pidfile listen_addr listen_port unix_socket_dir unix_socket_mode
		unix_socket_group user pool_mode max_client_conn default_pool_size min_pool_size reserve_pool_size
		reserve_pool_timeout max_db_connections max_db_client_connections max_user_connections
		max_user_client_connections server_round_robin track_extra_parameters ignore_startup_parameters
		peer_id disable_pqexec application_name_add_host conffile service_name job_name stats_period
		max_prepared_statements scram_iterations
		auth_type auth_hba_file auth_ident_file auth_file auth_user auth_query auth_dbname auth_ldap_options
		syslog syslog_ident syslog_facility log_connections log_disconnections log_pooler_errors log_stats verbose
		admin_users stats_users
		server_reset_query server_reset_query_always server_check_delay server_check_query server_fast_close
		server_lifetime server_idle_timeout server_connect_timeout server_login_retry client_login_timeout
		autodb_idle_timeout dns_max_ttl dns_nxdomain_ttl dns_zone_check_period resolv_conf query_wait_notify
		client_tls_sslmode client_tls_key_file client_tls_cert_file client_tls_ca_file client_tls_protocols
		client_tls_ciphers client_tls13_ciphers client_tls_ecdhcurve client_tls_dheparams server_tls_sslmode
		server_tls_ca_file server_tls_key_file server_tls_cert_file server_tls_protocols server_tls_ciphers
		server_tls13_ciphers
		query_timeout query_wait_timeout cancel_wait_timeout client_idle_timeout idle_transaction_timeout
		transaction_timeout suspend_timeout
		pkt_buf max_packet_size listen_backlog sbuf_loopcnt so_reuseport tcp_defer_accept tcp_socket_buffer
		tcp_keepalive tcp_keepcnt tcp_keepidle tcp_keepintvl tcp_user_timeout`),
	"[databases]": strings.Fields(`dbname host port user password auth_user auth_query auth_dbname pool_size
		min_pool_size reserve_pool_size connect_query pool_mode load_balance_hosts max_db_connections
		max_db_client_connections server_lifetime client_encoding datestyle timezone`),
	"[users]": strings.Fields(`pool_size reserve_pool_size pool_mode max_user_connections query_timeout
		idle_transaction_timeout transaction_timeout client_idle_timeout max_user_client_connections`),
	"[peers]": strings.Fields(`host port pool_size`),
}

// docRow is a row of the key tables in docs/migrating-from-pgbouncer.md.
type docRow struct{ key, status, notes string }

// readKeyTables parses the tables under "## Every PgBouncer 1.25 key", by section.
func readKeyTables(t *testing.T) map[string][]docRow {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "migrating-from-pgbouncer.md"))
	require.NoError(t, err)
	defer f.Close()
	tables := map[string][]docRow{}
	inPart, section := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inPart = strings.HasPrefix(line, "## Every PgBouncer 1.25 key")
		case inPart && strings.HasPrefix(line, "### "):
			section = strings.TrimPrefix(line, "### ")
		case inPart && section != "" && strings.HasPrefix(line, "| `"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			require.Len(t, cells, 3, line)
			tables[section] = append(tables[section], docRow{
				key:    strings.Trim(strings.TrimSpace(cells[0]), "`"),
				status: strings.TrimSpace(cells[1]),
				notes:  strings.TrimSpace(cells[2]),
			})
		}
	}
	require.NoError(t, sc.Err())
	return tables
}

// loadKey loads a pgbouncer.ini holding content up to a pool.Config and pool.New, as the
// binary does at start.
func loadKey(t *testing.T, content string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pgbouncer.ini")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	s, err := loadConfig([]string{path}, envMap{}.get)
	if err != nil {
		return err
	}
	srv, err := pool.New(s.poolConfig(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = srv.Shutdown(ctx)
	return nil
}

// TestKeyTable checks that every PgBouncer 1.25 key has a row in the migration guide, and
// that the loader does what the row says: a key that works loads (or, for a setting pool
// does not act on yet, is refused with "is not supported yet"), and a refused key is
// refused with the reason the row gives, unless it has the value cmpool accepts.
func TestKeyTable(t *testing.T) {
	tables := readKeyTables(t)
	code := map[string][]pgbKey{"[pgbouncer]": pgbouncerKeys, "[databases]": databaseKeys, "[users]": userKeys, "[peers]": peerKeys}
	for section, want := range pgbouncer125Keys {
		rows := tables[section]
		var keys []string
		for _, r := range rows {
			keys = append(keys, r.key)
		}
		require.ElementsMatch(t, want, keys, "keys of %s in the guide", section)
		var codeKeys []string
		for _, k := range code[section] {
			codeKeys = append(codeKeys, k.name)
		}
		require.ElementsMatch(t, want, codeKeys, "keys of %s in the loader", section)

		for _, r := range rows {
			t.Run(section+" "+r.key, func(t *testing.T) {
				k, _ := lookupKey(code[section], r.key)
				require.Equal(t, k.status, r.status)
				// A base that loads, and the line that sets the key.
				base, line := "[pgbouncer]\nunix_socket_dir =\n[databases]\n* = host=127.0.0.1 port=5432\n", ""
				switch section {
				case "[pgbouncer]":
					line = fmt.Sprintf("[pgbouncer]\n%s = %s\n", r.key, k.example)
				case "[databases]":
					line = fmt.Sprintf("app = host=127.0.0.1 %s='%s'\n", r.key, k.example)
				case "[users]":
					line = fmt.Sprintf("[users]\nalice = %s=%s\n", r.key, k.example)
				case "[peers]":
					line = fmt.Sprintf("[peers]\n1 = host=127.0.0.1 %s=%s\n", r.key, k.example)
				}
				err := loadKey(t, base+line)
				switch r.status {
				case keyRefused:
					require.Error(t, err)
					require.ErrorContains(t, err, r.key)
					require.Contains(t, r.notes, "Refused: ")
					why := strings.TrimSuffix(strings.SplitN(strings.TrimPrefix(r.notes, "Refused: "), ". ", 2)[0], ".")
					require.ErrorContains(t, err, why)
					if k.accept != "" && section == "[pgbouncer]" {
						require.NoError(t, loadKey(t, base+fmt.Sprintf("[pgbouncer]\n%s = %s\n", r.key, k.accept)),
							"the value cmpool does anyway loads")
					}
				default:
					if err != nil && strings.Contains(err.Error(), "is not supported yet") {
						// Pending in pool: the setting reached pool.Config, which refuses it.
						// (pool names a database's reserve_pool_size by its old name.)
						require.ErrorContains(t, err, strings.TrimSuffix(r.key, "_size"))
						return
					}
					if err != nil && slices.Contains(strings.Fields("auth_file auth_hba_file server_tls_ca_file server_tls_key_file server_tls_cert_file"), r.key) &&
						(strings.Contains(err.Error(), "no such file") || strings.Contains(err.Error(), "go together")) {
						return // read, and acted on: the example file does not exist, or wants its pair
					}
					require.NoError(t, err)
				}
			})
		}
	}
}
