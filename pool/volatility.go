package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/cmlite/cmpool/router"
)

// funcVolatility caches whether functions are volatile, per database, as pg_proc on the
// primary says: a read that calls a function known to neither of the router's lists may
// go to a replica only if the function is not volatile. A reload clears it, since the
// schema may have changed.
type funcVolatility struct {
	m sync.Map // database + "\x00" + function -> bool (volatile)
}

// any reports whether any of funcs is volatile in database, asking lookup for those not
// cached and caching the answers. A failed lookup counts as volatile, and is not cached.
func (fv *funcVolatility) any(ctx context.Context, log *slog.Logger, database string, funcs []string,
	lookup func(ctx context.Context, f string) (bool, error)) bool {
	for _, f := range funcs {
		key := database + "\x00" + f
		if v, ok := fv.m.Load(key); ok {
			if v.(bool) {
				return true
			}
			continue
		}
		vol, err := lookup(ctx, f)
		if err != nil {
			log.Debug("function volatility lookup failed", "function", f, "error", err)
			return true
		}
		fv.m.Store(key, vol)
		if vol {
			return true
		}
	}
	return false
}

// clear forgets every answer.
func (fv *funcVolatility) clear() { fv.m.Clear() }

// lookupVolatile asks pg_proc, on a connection of bp, whether function f (name or
// schema.name) is volatile. An unknown function counts as volatile.
func lookupVolatile(ctx context.Context, bp *backendPool, f string) (bool, error) {
	schema, name, qualified := strings.Cut(f, ".")
	if !qualified {
		schema, name = "", f
	}
	q := fmt.Sprintf(`SELECT coalesce(bool_or(p.provolatile = 'v'), true) FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = %s AND (%s = '' OR n.nspname = %s)`, router.QuoteLiteral(name), router.QuoteLiteral(schema), router.QuoteLiteral(schema))
	res, err := bp.Acquire(ctx)
	if err != nil {
		return true, err
	}
	out, err := res.Value().Exec(ctx, q)
	if err != nil {
		bp.GiveBack(res, true)
		return true, err
	}
	bp.GiveBack(res, false)
	if out.Err != nil || len(out.Row) != 1 {
		return true, errors.New("unexpected answer from pg_proc lookup")
	}
	return out.Row[0] == "t", nil
}
