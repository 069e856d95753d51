package session

import "strconv"

// PinCheckQuery asks a server, idle, which session state it holds that cannot follow a
// client to another server: its one row counts the session advisory locks its backend
// holds and its holdable (WITH HOLD) cursors, and is 1 if it has temporary objects. Read
// with PinReasons.
//
// Every object created in a schema (a relation, function, type, …) depends on it in
// pg_depend, which has an index on the referenced object: so the temporary schema's
// objects are found without scanning pg_class, pg_proc and pg_type (a scan of pg_proc
// alone costs more than the rest of the query).
const PinCheckQuery = "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())," +
	" (SELECT pg_catalog.count(*) FROM pg_catalog.pg_cursors WHERE is_holdable)," +
	" CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_depend WHERE refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass" +
	" AND refobjid = pg_catalog.pg_my_temp_schema()) THEN 1 ELSE 0 END"

// The reasons a client is pinned to its server, as SHOW CLIENTS' pinned column shows them.
const (
	PinAdvisoryLock = "advisory_lock"
	PinWithHold     = "with_hold_cursor"
	PinTempObject   = "temp_table"
	PinUnknown      = "unknown"
	pinCheckColumns = 3
)

// pinReasonSets are the reason lists, shared: index bit 0 advisory locks, bit 1 holdable
// cursors, bit 2 temporary objects.
var pinReasonSets = func() (sets [8][]string) {
	names := [...]string{PinAdvisoryLock, PinWithHold, PinTempObject}
	for i := 1; i < len(sets); i++ {
		for b, n := range names {
			if i&(1<<b) != 0 {
				sets[i] = append(sets[i], n)
			}
		}
	}
	return sets
}()

// PinReasons reads the row of PinCheckQuery: the kinds of session state the server holds
// (nil if none; the slice is shared, read only). ok is false for a row that is not
// PinCheckQuery's.
func PinReasons(row []string) (reasons []string, ok bool) {
	if len(row) != pinCheckColumns {
		return nil, false
	}
	i := 0
	for b, v := range row {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, false
		}
		if n > 0 {
			i |= 1 << b
		}
	}
	return pinReasonSets[i], true
}
