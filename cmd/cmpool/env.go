package main

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// This file reads the environment variables of the PgBouncer container images, so that a
// compose file that ran PgBouncer runs cmpool with only the image name changed:
//
//   - DATABASES_HOST, DATABASES_PORT, DATABASES_USER, DATABASES_PASSWORD and
//     DATABASES_DBNAME describe the server, as the pgbouncer/pgbouncer and edoburu/pgbouncer
//     images write them into [databases]. cmpool makes them the primary. Clients log in
//     with DATABASES_USER and DATABASES_PASSWORD (the images also put them in the
//     userlist), and any other user the server and the auth settings let in.
//   - LISTEN_ADDR, LISTEN_PORT, AUTH_TYPE, AUTH_FILE, ADMIN_USERS and STATS_USERS are the
//     [pgbouncer] keys of the same names; PGBOUNCER_<KEY> sets any [pgbouncer] key, as
//     the pgbouncer/pgbouncer image takes it.
//   - REPLICA_URL adds a replica.
//
// They come after the configuration file and before cmpool's own variables (CMPOOL_*,
// DATABASE_URL, REPLICA_URLS, POOL_MODE, ...), which come before the flags. LISTEN_ADDR and
// LISTEN_PORT change the address and the port of the listen address that CMPOOL_LISTEN or
// the file gives, so that they work in cmpool's image (which sets CMPOOL_LISTEN); --listen
// wins over them.

// imageKeys are the [pgbouncer] keys the images take under their bare names.
var imageKeys = []string{"auth_type", "auth_file", "admin_users", "stats_users"}

// applyImageEnv applies the PgBouncer images' variables to s.
func applyImageEnv(s *settings, getenv func(string) string) error {
	if host := getenv("DATABASES_HOST"); host != "" {
		port := getenv("DATABASES_PORT")
		if port == "" {
			port = "5432"
		}
		u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(host, port), Path: "/" + getenv("DATABASES_DBNAME")}
		if user := getenv("DATABASES_USER"); user != "" {
			if pw := getenv("DATABASES_PASSWORD"); pw != "" {
				u.User = url.UserPassword(user, pw)
			} else {
				u.User = url.User(user)
			}
		}
		s.Primary = u.String()
	} else {
		for _, v := range []string{"DATABASES_PORT", "DATABASES_USER", "DATABASES_PASSWORD", "DATABASES_DBNAME"} {
			if getenv(v) != "" {
				return fmt.Errorf("%s is set but DATABASES_HOST is not: set DATABASES_HOST to the server's host", v)
			}
		}
	}
	var st iniState
	for _, k := range pgbouncerKeys {
		for _, env := range []string{strings.ToUpper(k.name), "PGBOUNCER_" + strings.ToUpper(k.name)} {
			if env == strings.ToUpper(k.name) && !slices.Contains(imageKeys, k.name) {
				continue
			}
			v := getenv(env)
			if v == "" {
				continue
			}
			if k.set == nil {
				if err := k.refusal(env, v); err != nil {
					return err
				}
				continue
			}
			if err := k.set(s, &st, v); err != nil {
				return fmt.Errorf("invalid value %q for %s: %w", v, env, err)
			}
		}
	}
	if st.logConnections != nil || st.logDisconnections != nil {
		s.LogConnections = st.logConnections != nil && *st.logConnections || st.logDisconnections != nil && *st.logDisconnections
	}
	return nil
}

// applyListenEnv applies LISTEN_ADDR and LISTEN_PORT (or PGBOUNCER_LISTEN_ADDR and
// PGBOUNCER_LISTEN_PORT) over the listen address in s, and adds REPLICA_URL's replica.
func applyListenEnv(s *settings, getenv func(string) string) error {
	addr := firstEnv(getenv, "LISTEN_ADDR", "PGBOUNCER_LISTEN_ADDR")
	port := firstEnv(getenv, "LISTEN_PORT", "PGBOUNCER_LISTEN_PORT")
	if addr != "" || port != "" {
		host0, port0, err := net.SplitHostPort(strings.Split(s.Listen, ",")[0])
		if err != nil {
			return fmt.Errorf("listen address %q: %w", s.Listen, err)
		}
		if addr == "" {
			addr = host0
			if addr == "" {
				addr = "*"
			}
		}
		if port == "" {
			port = port0
		}
		var st iniState
		listenPort, _ := lookupKey(pgbouncerKeys, "listen_port")
		if err := listenPort.set(s, &st, port); err != nil {
			return fmt.Errorf("LISTEN_PORT: %w", err)
		}
		s.Listen = listenAddrs(addr, st.listenPort)
	}
	if r := strings.TrimSpace(getenv("REPLICA_URL")); r != "" {
		s.Replicas = append(s.Replicas, r)
	}
	return nil
}

func firstEnv(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}
