package pool

import (
	"fmt"
	"maps"
	"slices"
)

// unbuilt returns an error naming the first PgBouncer setting in c that cmpool does not
// act on yet, so that none is accepted and silently ignored.
func (c Config) unbuilt() error {
	type setting struct {
		name string
		set  bool
	}
	list := []setting{
		{"server_login_retry", c.ServerLoginRetry != 0},
		{"transaction_timeout", c.TransactionTimeout != 0},
		{"track_extra_parameters", len(c.TrackExtraParameters) > 0},
	}
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		d := c.Databases[name]
		for _, s := range []setting{
			{"auth_user", d.AuthUser != ""},
		} {
			list = append(list, setting{"database " + name + ": " + s.name, s.set})
		}
	}
	for _, s := range list {
		if s.set {
			return fmt.Errorf("pool: %s is not supported yet", s.name)
		}
	}
	return nil
}
