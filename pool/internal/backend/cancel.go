package backend

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// CancelTimeout bounds one cancel request to a server: dial, send, wait for the close.
const CancelTimeout = 5 * time.Second

// CancelCount counts the cancel requests in flight to one server connection's backend.
// Whoever gives the server back calls Settle. The caller counts a cancel (Add) before
// Cancel and must make sure none starts once Settle has begun.
type CancelCount struct {
	mu sync.Mutex // guards the fields below; never held across I/O
	n  int
	// idle is made when n leaves 0 and closed when it returns to 0.
	idle chan struct{}
	// doubtful: a cancel was sent and not answered; its signal may still arrive.
	doubtful bool
}

// Add counts a cancel about to be sent with Cancel.
func (cc *CancelCount) Add() {
	cc.mu.Lock()
	if cc.n == 0 {
		cc.idle = make(chan struct{})
	}
	cc.n++
	cc.mu.Unlock()
}

// done ends a cancel; doubtful tells that it was sent and its answer never came.
func (cc *CancelCount) done(doubtful bool) {
	cc.mu.Lock()
	cc.n--
	cc.doubtful = cc.doubtful || doubtful
	if cc.n == 0 {
		close(cc.idle)
		cc.idle = nil
	}
	cc.mu.Unlock()
}

// inFlight returns the number of cancels in flight.
func (cc *CancelCount) inFlight() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.n
}

// Settle waits until no cancel is in flight, at most d. It reports whether the server
// may be lent again: false if a cancel is still in flight or one was never answered.
func (cc *CancelCount) Settle(d time.Duration) bool {
	cc.mu.Lock()
	idle := cc.idle
	cc.mu.Unlock()
	if idle != nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-idle:
		case <-t.C:
			return false
		}
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.n == 0 && !cc.doubtful
}

// CancelCounters are a pool's cancel requests in progress, for SHOW POOLS and Stat.
type CancelCounters struct {
	mu sync.Mutex
	// clientWaiting: clients' cancel requests not yet sent to the server (dialling);
	// clientActive: sent, not yet answered; conns: connections open to forward a cancel,
	// clients' and query_timeout's.
	clientWaiting, clientActive, conns int
}

func (cc *CancelCounters) change(f func(*CancelCounters)) {
	cc.mu.Lock()
	f(cc)
	cc.mu.Unlock()
}

func (cc *CancelCounters) Snapshot() (clientWaiting, clientActive, conns int) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.clientWaiting, cc.clientActive, cc.conns
}

// Cancel asks the server to cancel whatever this connection is running, and waits until
// the postmaster has handled the request (it closes the socket once it has signalled the
// backend), so the signal cannot land on a later transaction. The caller has counted the
// cancel in sc.Cancels; Cancel ends it. counters are the pool's.
func (sc *Conn) Cancel(ctx context.Context, counters *CancelCounters, fromClient bool) (err error) {
	ctx, cancelCtx := context.WithTimeout(ctx, CancelTimeout)
	defer cancelCtx()
	sent := false
	if fromClient {
		counters.change(func(cc *CancelCounters) { cc.clientWaiting++ })
	}
	defer func() {
		if fromClient {
			counters.change(func(cc *CancelCounters) {
				if sent {
					cc.clientActive--
				} else {
					cc.clientWaiting--
				}
			})
		}
		sc.Cancels.done(sent && err != nil)
	}()
	addr := sc.NetConn.RemoteAddr()
	var d net.Dialer
	c, err := d.DialContext(ctx, addr.Network(), addr.String())
	if err != nil {
		return fmt.Errorf("pool: dial for cancel: %w", err)
	}
	counters.change(func(cc *CancelCounters) { cc.conns++ })
	defer func() {
		_ = c.Close()
		counters.change(func(cc *CancelCounters) { cc.conns-- })
	}()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req, err := (&pgproto3.CancelRequest{ProcessID: sc.PID, SecretKey: sc.secretKey}).Encode(nil)
	if err != nil {
		return err
	}
	// From the first byte written the signal may be sent.
	sent = true
	if fromClient {
		counters.change(func(cc *CancelCounters) { cc.clientWaiting--; cc.clientActive++ })
	}
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("pool: send cancel: %w", err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return fmt.Errorf("pool: wait for the cancel to be answered: %w", err)
	}
	return nil
}

// BeingCanceled returns how many of bp's servers have a cancel in flight.
func (bp *Pool) BeingCanceled() int {
	n := 0
	bp.conns.Range(func(k, _ any) bool {
		if k.(*Conn).Cancels.inFlight() > 0 {
			n++
		}
		return true
	})
	return n
}
