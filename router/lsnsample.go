package router

import (
	"context"
	"errors"
	"time"
)

// commitLSNSQL reads the primary's WAL insert position: the end of every commit record
// already made, whether or not it has been flushed (with synchronous_commit = off it may not
// be), which is what a replica's replay position is compared against. Then its flush
// position, read after it: whether the replicas can have that position yet (CanArrive).
const commitLSNSQL = "select pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text"

// lsnCall is one read of the primary's insert position, shared by every caller that asked
// for a position read after a time no later than start.
type lsnCall struct {
	start time.Time     // when the query was sent
	done  chan struct{} // closed when lsn and err are set
	lsn   LSN
	err   error
}

// ErrClosed is returned by ReplicaSet methods that need the set open after Close.
var ErrClosed = errors.New("router: replica set closed")

// PrimaryLSNAfter returns the primary's WAL insert position as read by a query sent at or
// after the time after. Every transaction that had committed by then ends at or before it:
// a read that waits for a replica to replay it sees those transactions. This is how the
// pool learns a writer's commit position lazily: instead of one extra round trip at the end
// of every write transaction on the client's server connection, one read on the set's own
// connection to the primary, shared by every reader that needs one, only when a read follows
// a write.
//
// Concurrent callers share reads: a read in flight that was sent at or after after serves
// every caller waiting for it, and a caller whose time is later than the read in flight waits
// for the next one. A failed read returns its error to the callers waiting for it; the next
// caller tries again.
func (rs *ReplicaSet) PrimaryLSNAfter(ctx context.Context, after time.Time) (LSN, error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		rs.lsnMu.Lock()
		if rs.lsnClosed {
			rs.lsnMu.Unlock()
			return 0, ErrClosed
		}
		if !rs.lsnLastAt.IsZero() && !rs.lsnLastAt.Before(after) {
			lsn := rs.lsnLast
			rs.lsnMu.Unlock()
			return lsn, nil
		}
		call := rs.lsnCall
		if call == nil {
			call = &lsnCall{start: time.Now(), done: make(chan struct{})}
			rs.lsnCall = call
			rs.lsnMu.Unlock()
			rs.readCommitLSN(call)
		} else {
			rs.lsnMu.Unlock()
		}
		select {
		case <-call.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if call.start.Before(after) {
			continue // sent before our time: the next read serves us
		}
		return call.lsn, call.err
	}
}

// readCommitLSN runs call's query on the set's own connection to the primary and publishes
// the result. It is independent of any caller's context: others may be waiting for it.
func (rs *ReplicaSet) readCommitLSN(call *lsnCall) {
	rs.lsnReads.Add(1)
	rs.lsnConnMu.Lock()
	row, err := rs.query(rs.ctx, &rs.lsnNode, commitLSNSQL, 2)
	rs.lsnConnMu.Unlock()
	var lsn, flushed LSN
	if err == nil {
		lsn, err = ParseLSN(row[0])
	}
	if err == nil {
		flushed, err = ParseLSN(row[1])
	}
	rs.lsnMu.Lock()
	call.lsn, call.err = lsn, err
	if err == nil {
		rs.lsnFlushed = max(rs.lsnFlushed, flushed)
	}
	if err == nil && call.start.After(rs.lsnLastAt) {
		rs.lsnLast, rs.lsnLastAt = lsn, call.start
	}
	rs.lsnCall = nil
	rs.lsnMu.Unlock()
	close(call.done)
}

// closeLSN closes the connection of PrimaryLSNAfter; later calls fail with ErrClosed.
func (rs *ReplicaSet) closeLSN(ctx context.Context) {
	rs.lsnMu.Lock()
	rs.lsnClosed = true
	rs.lsnMu.Unlock()
	rs.lsnConnMu.Lock()
	rs.lsnNode.closeConn(ctx)
	rs.lsnConnMu.Unlock()
}

// PrimaryFlushedLSN returns the newest flush position of the primary read with a
// PrimaryLSNAfter position (pg_current_wal_flush_lsn(), read just after it); 0 before
// the first read.
func (rs *ReplicaSet) PrimaryFlushedLSN() LSN {
	rs.lsnMu.Lock()
	defer rs.lsnMu.Unlock()
	return rs.lsnFlushed
}

// ReceivedLSN returns the largest pg_last_wal_receive_lsn() of the replicas that are in
// recovery, at their last successful check; 0 if none is known.
func (rs *ReplicaSet) ReceivedLSN() LSN {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out LSN
	for _, r := range rs.replicas {
		if r.role == RoleReplica {
			out = max(out, r.receiveLSN)
		}
	}
	return out
}

// PrimaryLSNReads counts the reads of the primary's position PrimaryLSNAfter has sent.
func (rs *ReplicaSet) PrimaryLSNReads() int64 { return rs.lsnReads.Load() }
