package admin

import "time"

// Totals are a pool's cumulative counters; times in nanoseconds.
type Totals struct {
	Xacts, Queries, Assignments, Waits, Received, Sent int64
	XactTime, QueryTime, WaitTime                      int64
	ClientParses, ServerParses, Binds                  int64
}

func (a Totals) Plus(b Totals) Totals {
	return Totals{a.Xacts + b.Xacts, a.Queries + b.Queries, a.Assignments + b.Assignments, a.Waits + b.Waits,
		a.Received + b.Received, a.Sent + b.Sent, a.XactTime + b.XactTime, a.QueryTime + b.QueryTime,
		a.WaitTime + b.WaitTime, a.ClientParses + b.ClientParses, a.ServerParses + b.ServerParses, a.Binds + b.Binds}
}

func (a Totals) Minus(b Totals) Totals {
	return Totals{a.Xacts - b.Xacts, a.Queries - b.Queries, a.Assignments - b.Assignments, a.Waits - b.Waits,
		a.Received - b.Received, a.Sent - b.Sent, a.XactTime - b.XactTime, a.QueryTime - b.QueryTime,
		a.WaitTime - b.WaitTime, a.ClientParses - b.ClientParses, a.ServerParses - b.ServerParses, a.Binds - b.Binds}
}

// Averages are per-second rates (and per-transaction or per-query times) over the last
// stats period, as PgBouncer's avg_* columns.
type Averages struct {
	Xacts, Queries, Assignments, Recv, Sent int64
	XactTime, QueryTime, WaitTime           int64 // µs per transaction, per query, per second
	ClientParses, ServerParses, Binds       int64
}

func AveragesOf(d Totals, period time.Duration) Averages {
	secs := int64(period / time.Second)
	if secs <= 0 {
		secs = 1
	}
	a := Averages{Xacts: d.Xacts / secs, Queries: d.Queries / secs, Assignments: d.Assignments / secs,
		Recv: d.Received / secs, Sent: d.Sent / secs, WaitTime: d.WaitTime / 1000 / secs,
		ClientParses: d.ClientParses / secs, ServerParses: d.ServerParses / secs, Binds: d.Binds / secs}
	if d.Xacts > 0 {
		a.XactTime = d.XactTime / 1000 / d.Xacts
	}
	if d.Queries > 0 {
		a.QueryTime = d.QueryTime / 1000 / d.Queries
	}
	return a
}
