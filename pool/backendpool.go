package pool

import (
	"net"
	"strconv"

	"github.com/cmlite/cmpool/pool/internal/backend"
)

// poolKey names one pool of server connections.
type poolKey struct {
	database string // as the client named it
	user     string // as the client named it
	backend  int    // 0 is the primary
}

// backendPool is the set of server connections for one (database, user, backend): the
// backend's pool, with its pool mode and what the relay counts about it.
type backendPool struct {
	*backend.Pool
	key  poolKey
	mode Mode
}

// newBackendPool makes the pool of key with cfg (its Name is filled in here).
func newBackendPool(key poolKey, mode Mode, cfg backend.PoolConfig) (*backendPool, error) {
	cfg.Name = "primary"
	if key.backend > 0 {
		cfg.Name = net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	}
	p, err := backend.NewPool(cfg)
	if err != nil {
		return nil, err
	}
	return &backendPool{Pool: p, key: key, mode: mode}, nil
}
