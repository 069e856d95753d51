package pool

import (
	"fmt"
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
	}
	for _, s := range list {
		if s.set {
			return fmt.Errorf("pool: %s is not supported yet", s.name)
		}
	}
	return nil
}
