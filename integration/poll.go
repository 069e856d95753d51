package integration

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// waitStreaming waits until replica n is in recovery and streaming from the primary, and the
// primary lists it in pg_stat_replication.
func (c *Cluster) waitStreaming(ctx context.Context, n *Node) error {
	err := c.poll(ctx, n, readyTimeout, "SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), '')",
		func(row []string) bool { return row[0] == "t" && row[1] == "streaming" })
	if err != nil {
		return err
	}
	sql := "SELECT count(*) FROM pg_stat_replication WHERE application_name = '" + n.Name + "' AND state = 'streaming'"
	return c.poll(ctx, c.Primary, readyTimeout, sql, func(row []string) bool { return row[0] != "0" })
}

// poll runs sql on n until done accepts its first row (nil done: until it runs at all), reconnecting
// as needed, for at most timeout (0: until ctx ends).
func (c *Cluster) poll(ctx context.Context, n *Node, timeout time.Duration, sql string, done func(row []string) bool) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var lastErr error
	for {
		if conn == nil || conn.IsClosed() {
			conn, lastErr = connect(ctx, n)
		}
		if conn != nil && !conn.IsClosed() {
			var row []string
			row, lastErr = queryRow(ctx, conn, sql)
			if lastErr == nil && (done == nil || done(row)) {
				return nil
			}
			if lastErr == nil {
				lastErr = fmt.Errorf("%s returned %v", sql, row)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), lastErr)
		case <-time.After(pollInterval):
		}
	}
}

// connect opens a connection to n as the superuser, each attempt bounded to a few seconds.
func connect(ctx context.Context, n *Node) (*pgconn.PgConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgconn.Connect(ctx, n.URL("postgres", Superuser))
}

// queryRow runs sql with the simple protocol and returns the first row of its last result as text.
func queryRow(ctx context.Context, conn *pgconn.PgConn, sql string) ([]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(results) == 0 || len(results[len(results)-1].Rows) == 0 {
		return nil, fmt.Errorf("%s returned no rows", sql)
	}
	raw := results[len(results)-1].Rows[0]
	row := make([]string, len(raw))
	for i, v := range raw {
		row[i] = string(v)
	}
	return row, nil
}
