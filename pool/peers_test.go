package pool

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/protocol"
)

func TestPeerNoticeRoundTrip(t *testing.T) {
	for _, f := range [][3]string{{"app", "api", "10.0.0.7"}, {"", "", ""}, {"db", "user", "::1"}} {
		b := appendPeerNotice(nil, f[0], f[1], f[2])
		require.Equal(t, byte('W'), b[0])
		require.Equal(t, len(b)-1, int(binary.BigEndian.Uint32(b[1:5])))
		database, user, addr, ok := parsePeerNotice(b[5:])
		require.True(t, ok)
		require.Equal(t, f, [3]string{database, user, addr})
	}
	for _, bad := range []string{"", "app\x00api\x00", "app\x00api\x00addr", "a\x00b\x00c\x00d"} {
		_, _, _, ok := parsePeerNotice([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
}

// FuzzPeerNotice: a notice body from the network never panics, and one that parses is
// the encoding of what it parsed to.
func FuzzPeerNotice(f *testing.F) {
	f.Add([]byte("app\x00api\x0010.0.0.7\x00"))
	f.Add([]byte("\x00\x00\x00"))
	f.Add([]byte("a\x00b"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		database, user, addr, ok := parsePeerNotice(body)
		if !ok {
			return
		}
		require.Equal(t, body, appendPeerNotice(nil, database, user, addr)[5:])
	})
}

func TestWriteScopes(t *testing.T) {
	var w writeScopes
	t0 := time.Now()
	require.True(t, w.last("a").IsZero())
	w.note("a", t0)
	w.note("a", t0.Add(-time.Second)) // an older write does not move it back
	require.Equal(t, t0, w.last("a"))
	require.True(t, w.last("b").IsZero(), "scopes are apart")

	// Full: the scopes with no write for scopeForget go, the others stay.
	for i := range maxWriteScopes - 1 {
		w.note(string(rune('A'+i%26))+time.Duration(i).String(), t0.Add(-2*scopeForget))
	}
	w.note("new", t0.Add(time.Second))
	require.Equal(t, t0, w.last("a"))
	require.Equal(t, t0.Add(time.Second), w.last("new"))
	require.Len(t, w.at, 2)
}

// TestPeerLinkBatches: notices from many writers at once reach the peer, each answered,
// in fewer round trips than notices while the peer is slow to answer.
func TestPeerLinkBatches(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var got, batches atomic.Int64
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		if _, err := protocol.ReadStartupRequest(r); err != nil {
			return
		}
		var hdr [5]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			got.Add(1)
			if r.Buffered() == 0 {
				// The end of a batch: answer all of it, slowly.
				batches.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
			if _, err := conn.Write([]byte{'K'}); err != nil {
				return
			}
		}
	}()
	l := &peerLink{addr: ln.Addr().String()}
	const writers, each = 20, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := l.send(appendPeerNotice(nil, "db", "u", strconv.Itoa(w*each+i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(writers*each), got.Load())
	t.Logf("%d notices in %d batches", got.Load(), batches.Load())
	require.Less(t, batches.Load(), int64(writers*each/2), "notices were not batched")
	_ = l.conn.Close()
}
