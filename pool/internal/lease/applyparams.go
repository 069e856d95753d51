package lease

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
)

// A client's settings are applied on a server in one query, in the fixed order
// session.Plan gives (see pool/internal/session/apply.go); applyParams runs it.

// serverSettings is what cmpool recorded of sc's settings, shared with sc.
func serverSettings(sc *backend.Conn) session.Server {
	return session.Server{Defaults: sc.Defaults, Set: sc.Set}
}

// planParams returns the steps that take sc from what cmpool recorded of it to params.
// resetAll clears the server's settings first.
func planParams(sc *backend.Conn, params map[string]string, resetAll bool) []session.Step {
	return session.Plan(serverSettings(sc), params, resetAll)
}

// recordApplied notes on sc that it now holds params, after the steps planned for them ran
// (with RESET ALL first if resetAll).
func recordApplied(sc *backend.Conn, params map[string]string, resetAll bool) {
	session.RecordApplied(serverSettings(sc), params)
	if resetAll {
		sc.UnnamedSettings = false
	}
}

// restoreFailed runs after the server refused the steps applying a logged-in client's
// settings (first is its error; nothing took effect). Each step is tried alone, in order,
// to find the ones refused: those are dropped from the client's settings and reported in
// the returned error, whose SQLSTATE is the server's. If only resetting the server's own
// leftovers failed, the error is not the client's: a plain error is returned. Either way
// the caller closes the server.
func (c *Client) restoreFailed(ctx context.Context, sc *backend.Conn, steps []session.Step, first *pgconn.PgError) error {
	var dropped []string
	var cause *pgconn.PgError
	for _, st := range steps {
		res, err := sc.Exec(ctx, session.Query([]session.Step{st}))
		if err != nil {
			return err
		}
		if sc.TxStatus != 'I' {
			return fmt.Errorf("pool: server left in transaction after set_config: %s", first.Message)
		}
		if res.Err == nil || st.Value == nil {
			continue
		}
		dropped = append(dropped, st.Name)
		if cause == nil {
			cause = res.Err
		}
	}
	if len(dropped) == 0 {
		return fmt.Errorf("pool: server refused to restore session settings: %s (SQLSTATE %s)", first.Message, first.Code)
	}
	c.Mu.Lock()
	c.Settings.Drop(dropped)
	c.Mu.Unlock()
	c.Log.Warn("session setting could not be restored on a server connection; dropped", "settings", dropped, "error", cause.Message)
	return session.RefusedError(dropped, cause.Code, cause.Message, cause.Detail)
}

// ApplyParams makes sc's session parameters match the client's, with one round trip when
// anything differs, in a defined order (see applyparams.go). Values go through
// set_config, which parses them as a configuration file would, so list values such as
// search_path keep their meaning. It works on a snapshot of the client's parameters
// taken under c.mu: the relay goroutine calls it too (replayOnPrimary).
//
// At login a refused value is the client's error, returned as is (FATAL). Later, the
// settings the server refuses are dropped from the client's and a *protocol.Error says
// so; the caller closes the server.
func (c *Client) ApplyParams(ctx context.Context, sc *backend.Conn) error {
	c.Mu.Lock()
	version := c.Settings.Version()
	if sc.ConfiguredFor == c.ID && sc.ConfiguredVersion == version {
		c.Mu.Unlock()
		return nil
	}
	params := c.Settings.Snapshot() // only read below, and copied by the next change
	c.Mu.Unlock()
	resetAll := sc.UnnamedSettings && sc.ConfiguredFor != c.ID
	steps := planParams(sc, params, resetAll)
	if len(steps) > 0 {
		ctx, cancel := context.WithTimeout(ctx, c.Host.Config().ServerConnectTimeout)
		defer cancel()
		res, err := sc.Exec(ctx, session.Query(steps))
		if err != nil {
			return err
		}
		if res.Err != nil {
			if sc.TxStatus != 'I' {
				return fmt.Errorf("server left in transaction after SET: %w", res.Err)
			}
			if !c.Host.LoggedIn() {
				return &protocol.Error{Severity: protocol.SeverityFatal, Code: res.Err.Code, Message: res.Err.Message, Detail: res.Err.Detail}
			}
			return c.restoreFailed(ctx, sc, steps, res.Err)
		}
		recordApplied(sc, params, resetAll)
	}
	sc.ConfiguredFor, sc.ConfiguredVersion = c.ID, version
	return nil
}
