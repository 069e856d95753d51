package pool

import (
	"fmt"
)

// unbuilt returns an error naming the first PgBouncer setting in c that cmpool does not
// act on yet, so that none is accepted and silently ignored. cmpool acts on every setting
// Config names today; a setting named before it is built is listed here until then.
func (c Config) unbuilt() error {
	type setting struct {
		name string
		set  bool
	}
	var list []setting
	for _, s := range list {
		if s.set {
			return fmt.Errorf("pool: %s is not supported yet", s.name)
		}
	}
	return nil
}
