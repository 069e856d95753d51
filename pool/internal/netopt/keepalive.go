// Package netopt sets TCP options (keepalive, user timeout) on client and server sockets.
package netopt

import (
	"context"
	"net"
	"time"
)

// Keepalive is PgBouncer's tcp_keepalive, tcp_keepidle, tcp_keepintvl, tcp_keepcnt and
// tcp_user_timeout. Zero durations and counts leave the operating system's values.
type Keepalive struct {
	Off         bool
	Idle        time.Duration
	Interval    time.Duration
	Count       int
	UserTimeout time.Duration
}

// config is k as Go's keepalive settings: a negative field leaves the system's value.
func (k Keepalive) config() net.KeepAliveConfig {
	c := net.KeepAliveConfig{Enable: !k.Off, Idle: -1, Interval: -1, Count: -1}
	if k.Idle > 0 {
		c.Idle = k.Idle
	}
	if k.Interval > 0 {
		c.Interval = k.Interval
	}
	if k.Count > 0 {
		c.Count = k.Count
	}
	return c
}

// Apply sets k on conn when it is a TCP connection; other connections are left alone.
func (k Keepalive) Apply(conn net.Conn) error {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tc.SetKeepAliveConfig(k.config()); err != nil {
		return err
	}
	if k.UserTimeout > 0 {
		return setUserTimeout(tc, k.UserTimeout)
	}
	return nil
}

// Dialer returns a dial function (for pgconn.Config.DialFunc) that connects with
// timeout as net.Dialer's Timeout and sets k on each TCP connection.
func (k Keepalive) Dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAliveConfig: k.config()}
	if k.Off {
		d.KeepAlive = -1
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if k.UserTimeout > 0 {
			if tc, ok := conn.(*net.TCPConn); ok {
				if err := setUserTimeout(tc, k.UserTimeout); err != nil {
					_ = conn.Close()
					return nil, err
				}
			}
		}
		return conn, nil
	}
}
