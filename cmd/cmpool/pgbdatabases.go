package main

import (
	"fmt"
	"strings"
)

// iniDatabase is a [databases] entry of a pgbouncer.ini, parsed.
type iniDatabase struct {
	entry      iniEntry
	host, port string
	settings   databaseSettings
}

// applyDatabases maps the [databases] entries onto the primary and [databases.NAME].
//
// A pgbouncer.ini names no primary. cmpool takes the server of the "*" entry, or else the
// server of the first entry with a host, as the primary: databases not listed go there
// under the client's database name (as "*" does in PgBouncer), and replicas are routed to
// for the entries on that server. An entry on another server gets its own url and is never
// routed. DATABASE_URL or --primary, when set, win over the file's choice.
func applyDatabases(entries []iniEntry, s *settings) error {
	var dbs []iniDatabase
	var star *iniDatabase
	for _, e := range entries {
		d, err := parseDatabase(e)
		if err != nil {
			return err
		}
		if e.Key == "*" {
			if d.settings != (databaseSettings{Password: d.settings.Password}) {
				return fmt.Errorf("%s: the * entry takes host, port and password only: it keeps the client's database and user names; "+
					"name a database in [databases] to set more, and pool settings in [pgbouncer]", e.where())
			}
			star = &d
			continue
		}
		if strings.EqualFold(e.Key, "pgbouncer") || strings.EqualFold(e.Key, "cmpool") {
			return fmt.Errorf("%s: database name %q is reserved for the admin console", e.where(), e.Key)
		}
		dbs = append(dbs, d)
	}
	primary := star
	if primary == nil {
		for i := range dbs {
			if dbs[i].host != "" {
				primary = &dbs[i]
				break
			}
		}
	}
	if primary != nil && primary.host != "" {
		params := [][2]string{{"host", primary.host}, {"port", primary.port}}
		if primary.settings.User != "" {
			params = append(params, [2]string{"user", primary.settings.User})
		}
		if primary.settings.DBName != "" {
			params = append(params, [2]string{"dbname", primary.settings.DBName})
		} else if primary.entry.Key != "*" {
			params = append(params, [2]string{"dbname", primary.entry.Key})
		}
		if primary.settings.Password != "" {
			params = append(params, [2]string{"password", primary.settings.Password})
		}
		s.Primary = connString(params)
	}
	if len(dbs) > 0 && s.Databases == nil {
		s.Databases = map[string]databaseSettings{}
	}
	for _, d := range dbs {
		if d.host != "" && (primary == nil || d.host != primary.host || d.port != primary.port) {
			d.settings.URL = connString([][2]string{{"host", d.host}, {"port", d.port}})
		}
		s.Databases[d.entry.Key] = d.settings
	}
	return nil
}

// parseDatabase parses one [databases] entry.
func parseDatabase(e iniEntry) (iniDatabase, error) {
	params, err := parseConnString(e.Value)
	if err != nil {
		return iniDatabase{}, fmt.Errorf("%s: database %s: %w", e.where(), e.Key, err)
	}
	d := iniDatabase{entry: e, port: "5432"}
	ds := &d.settings
	for _, kv := range params {
		key, v := kv[0], kv[1]
		k, ok := lookupKey(databaseKeys, key)
		if !ok && key == "reserve_pool" {
			k, ok = lookupKey(databaseKeys, "reserve_pool_size")
		}
		if !ok && key == "route" { // cmpool's own: send this name to replicas
			ds.Route = v
			continue
		}
		if !ok {
			return d, fmt.Errorf("%s: database %s: unknown parameter %q", e.where(), e.Key, key)
		}
		switch k.name {
		case "dbname":
			ds.DBName = v
		case "host":
			if strings.Contains(v, ",") {
				return d, fmt.Errorf("%s: database %s: host = %s: %s", e.where(), e.Key, v, "a list of hosts is not supported: "+
					"list replicas in replicas or REPLICA_URL, and cmpool balances reads among them")
			}
			d.host = v
		case "port":
			n, perr := iniInt(v)
			if perr != nil || n < 1 || n > 65535 {
				err = fmt.Errorf("port: want a port number, got %q", v)
			}
			d.port = v
		case "user":
			ds.User = v
		case "password":
			ds.Password = v
		case "auth_user":
			ds.AuthUser = v
		case "auth_dbname":
			ds.AuthDBName = v
		case "pool_size":
			ds.PoolSize, err = iniCount(v)
		case "min_pool_size":
			ds.MinPoolSize, err = iniCount(v)
		case "reserve_pool_size":
			ds.ReservePool, err = iniCount(v)
		case "pool_mode":
			err = ds.PoolMode.Set(v)
		case "max_db_connections":
			ds.MaxDBConnections, err = iniCount(v)
		case "client_encoding":
			ds.ClientEncoding = v
		case "datestyle":
			ds.DateStyle = v
		case "timezone":
			ds.TimeZone = v
		default:
			err = k.refusal("database "+e.Key, v)
		}
		if err != nil {
			return d, fmt.Errorf("%s: database %s: %w", e.where(), e.Key, err)
		}
	}
	return d, nil
}

// connString builds a keyword/value connection string, quoting values as libpq does.
func connString(params [][2]string) string {
	var b strings.Builder
	for _, kv := range params {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		v := strings.ReplaceAll(kv[1], `\`, `\\`)
		v = strings.ReplaceAll(v, `'`, `\'`)
		fmt.Fprintf(&b, "%s='%s'", kv[0], v)
	}
	return b.String()
}
