package pool

// SetCancelPIDBits makes s hand out peered cancel keys from 2^bits process ids only, so
// that tests can run out of them.
func SetCancelPIDBits(s *Server, bits uint) { s.cancelPIDBits = bits }

// SetRelayFault makes f run before the relay handles each server message.
func SetRelayFault(s *Server, f func(typ byte)) { s.relayFault = f }

// PreparedRegistryLen is the number of statements s's registry holds.
func PreparedRegistryLen(s *Server) int { return s.stmts.Len() }

// SetClientFault makes f run before a logged-in client's each message is handled.
func SetClientFault(s *Server, f func(typ byte)) { s.clientFault = f }

// Pinning returns pin_session_state and max_pinned for database under cfg, with defaults.
func Pinning(cfg Config, database string) (bool, int) {
	if cfg.DefaultPoolSize == 0 {
		cfg.DefaultPoolSize = DefaultPoolSizeValue
	}
	return cfg.pinning(database)
}

// DetachedClients counts the clients parked without their net.Conn (parkconn.go).
func DetachedClients(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if w, ok := c.Conn.Net.(*wakeConn); ok {
			w.mu.Lock()
			if w.det != nil {
				n++
			}
			w.mu.Unlock()
		}
	}
	return n
}

// ParkAsks counts the clients s's sweeper asked to park.
func ParkAsks(s *Server) uint64 { return s.parkAsks.Load() }
