package peer_test

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

	"github.com/cmlite/cmpool/pool/internal/peer"
	"github.com/cmlite/cmpool/protocol"
)

func TestPeerNoticeRoundTrip(t *testing.T) {
	for _, f := range [][3]string{{"app", "api", "10.0.0.7"}, {"", "", ""}, {"db", "user", "::1"}} {
		b := peer.AppendNotice(nil, f[0], f[1], f[2])
		require.Equal(t, byte('W'), b[0])
		require.Equal(t, len(b)-1, int(binary.BigEndian.Uint32(b[1:5])))
		database, user, addr, ok := peer.ParseNotice(b[5:])
		require.True(t, ok)
		require.Equal(t, f, [3]string{database, user, addr})
	}
	for _, bad := range []string{"", "app\x00api\x00", "app\x00api\x00addr", "a\x00b\x00c\x00d"} {
		_, _, _, ok := peer.ParseNotice([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
}

// FuzzNotice: a notice body from the network never panics, and one that parses is
// the encoding of what it parsed to.
func FuzzNotice(f *testing.F) {
	f.Add([]byte("app\x00api\x0010.0.0.7\x00"))
	f.Add([]byte("\x00\x00\x00"))
	f.Add([]byte("a\x00b"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		database, user, addr, ok := peer.ParseNotice(body)
		if !ok {
			return
		}
		require.Equal(t, body, peer.AppendNotice(nil, database, user, addr)[5:])
	})
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
	var links peer.Links
	l := links.Link(ln.Addr().String())
	const writers, each = 20, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := l.Send(peer.AppendNotice(nil, "db", "u", strconv.Itoa(w*each+i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(writers*each), got.Load())
	t.Logf("%d notices in %d batches", got.Load(), batches.Load())
	require.Less(t, batches.Load(), int64(writers*each/2), "notices were not batched")
	links.CloseAll()
}

// TestServe: the receiving end notes each notice and answers it, stops when asked, and
// refuses a malformed message.
func TestServe(t *testing.T) {
	type seen struct{ database, user, addr string }
	run := func(t *testing.T, input []byte, stop func() bool) ([]seen, []byte, error) {
		client, server := net.Pipe()
		t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
		var got []seen
		errc := make(chan error, 1)
		go func() {
			errc <- peer.Serve(server, server, stop, func(d, u, a string) { got = append(got, seen{d, u, a}) })
			_ = server.Close()
		}()
		go func() { _, _ = client.Write(input) }()
		answers, _ := io.ReadAll(client)
		return got, answers, <-errc
	}
	never := func() bool { return false }

	notices := peer.AppendNotice(peer.AppendNotice(nil, "app", "api", "10.0.0.7"), "db", "u", "")
	// Two notices, then the peer closes: both noted and answered.
	client, server := net.Pipe()
	var got []seen
	errc := make(chan error, 1)
	go func() {
		errc <- peer.Serve(server, server, never, func(d, u, a string) { got = append(got, seen{d, u, a}) })
	}()
	go func() { _, _ = client.Write(notices) }() // a pipe: written as it is read
	acks := make([]byte, 2)
	_, err := io.ReadFull(client, acks)
	require.NoError(t, err)
	require.Equal(t, "KK", string(acks))
	require.NoError(t, client.Close())
	require.NoError(t, <-errc)
	require.Equal(t, []seen{{"app", "api", "10.0.0.7"}, {"db", "u", ""}}, got)

	t.Run("malformed", func(t *testing.T) {
		for _, bad := range [][]byte{
			{'X', 0, 0, 0, 4},
			{'W', 0, 0, 0, 3},
			{'W', 0, 1, 0, 0},
			append([]byte{'W', 0, 0, 0, 7}, "a\x00b"...),
		} {
			got, answers, err := run(t, bad, never)
			require.ErrorIs(t, err, peer.ErrBadNotice, "%q", bad)
			require.Empty(t, got)
			require.Empty(t, answers)
		}
	})
	t.Run("stop", func(t *testing.T) {
		_, _, err := run(t, nil, func() bool { return true })
		require.NoError(t, err)
	})
}
