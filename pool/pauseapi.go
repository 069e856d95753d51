package pool

import "context"

// Pause is the admin console's PAUSE (the binary's SIGUSR1): new transactions of database
// ("" for every database) wait, and Pause returns once every server connection of it is
// back in its pool, after closing them. It returns ctx's error, leaving the pause in place,
// when ctx ends first.
func (s *Server) Pause(ctx context.Context, database string) error {
	return s.pause(ctx, database)
}

// Resume is the admin console's RESUME (the binary's SIGUSR2): it ends a Pause of database
// ("" for every database), and reports whether anything was paused.
func (s *Server) Resume(database string) bool {
	return s.setPause(database, false, false)
}
