package pool

import (
	"maps"
	"slices"
	"time"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
)

// codeTransactionTimeout is PostgreSQL's SQLSTATE for transaction_timeout.
const codeTransactionTimeout = "25P04"

// transactionTimeoutError ends a client whose transaction outlived transaction_timeout.
func transactionTimeoutError() *protocol.Error {
	return protocol.NewFatal(codeTransactionTimeout, "terminating connection due to transaction timeout (transaction_timeout)")
}

// watchTransactions ends clients whose transaction has been open longer than
// transaction_timeout, counted from the transaction's first request on a server, whether
// the server is working on it or the client is idle in it. Such a client is marked, and
// its read deadline is moved to the past: its goroutine wakes, answers FATAL 25P04, and
// ends its lease, which closes or rolls back the server as for a client that leaves
// mid-transaction. It runs until the server shuts down.
func (s *Server) watchTransactions() {
	for {
		d := s.conf().TransactionTimeout
		tick := time.Second
		if d > 0 {
			tick = min(max(d/4, 10*time.Millisecond), time.Second)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(tick):
		}
		if d <= 0 {
			continue
		}
		s.mu.Lock()
		clients := slices.Collect(maps.Keys(s.conns))
		s.mu.Unlock()
		now := lease.Nanotime()
		for _, c := range clients {
			if start := c.TransactionStart(); c.xactTimedOut.Load() || start != 0 && now-start > int64(d) {
				if !c.xactTimedOut.Swap(true) && c.AbortRunning(s.ctx, transactionTimeoutError()) {
					continue // its relay closes the server and the client
				}
				_ = c.Conn.Net.SetReadDeadline(time.Now().Add(-time.Second))
			}
		}
	}
}
