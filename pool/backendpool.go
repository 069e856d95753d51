package pool

import (
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

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

func newBackendPool(key poolKey, mode Mode, connCfg *pgconn.Config, size, minSize, maxPrepared int, idleTimeout, lifetime, connectTimeout time.Duration, passthrough func() *passthroughKeys) (*backendPool, error) {
	name := "primary"
	if key.backend > 0 {
		name = net.JoinHostPort(connCfg.Host, strconv.Itoa(int(connCfg.Port)))
	}
	p, err := backend.NewPool(backend.PoolConfig{
		Name:           name,
		ConnConfig:     connCfg,
		Size:           size,
		MinSize:        minSize,
		IdleTimeout:    idleTimeout,
		Lifetime:       lifetime,
		ConnectTimeout: connectTimeout,
		MaxPrepared:    maxPrepared,
		Passthrough:    passthrough,
	})
	if err != nil {
		return nil, err
	}
	return &backendPool{Pool: p, key: key, mode: mode}, nil
}
