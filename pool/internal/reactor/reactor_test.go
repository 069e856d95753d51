//go:build linux

package reactor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// task records how it was run.
type task struct {
	ran    chan *Worker
	onRun  func(w *Worker)
	counts atomic.Int32
}

func newTask() *task { return &task{ran: make(chan *Worker, 16)} }

func (t *task) RunReady(w *Worker) {
	t.counts.Add(1)
	if t.onRun != nil {
		t.onRun(w)
	}
	t.ran <- w
}

// socketPair returns a connected pair of non-blocking stream sockets.
func socketPair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fds[0]); _ = syscall.Close(fds[1]) })
	return fds[0], fds[1]
}

// drain reads fd as the raw I/O does, telling ep, until it finds the socket empty.
func drain(ep *Endpoint, fd int) int {
	total := 0
	buf := make([]byte, 4)
	for {
		ep.ReadStart()
		n, err := syscall.Read(fd, buf)
		if err == syscall.EAGAIN {
			ep.ReadDone(true)
			return total
		}
		ep.ReadDone(err != nil || n < len(buf))
		if n <= 0 {
			return total
		}
		total += n
		if n < len(buf) {
			return total
		}
	}
}

func newSet(t *testing.T, n int) *Set {
	t.Helper()
	s, err := New(n)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func TestWaitRunsOnTheLoopWhenDataArrives(t *testing.T) {
	s := newSet(t, 2)
	a, b := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	tk := newTask()
	wt := &Waiter{Task: tk}

	require.False(t, ep.Wait(wt), "a new endpoint reads first: whether it is drained is unknown")
	require.Equal(t, 0, drain(&ep, a))
	require.True(t, ep.Wait(wt), "drained and nothing signalled: suspended")

	_, err := syscall.Write(b, []byte("hello"))
	require.NoError(t, err)
	select {
	case w := <-tk.ran:
		require.NotNil(t, w, "run by a loop's worker")
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not run")
	}
	require.Equal(t, 5, drain(&ep, a))
	require.Equal(t, 2, s.Stats().Loops)
}

func TestWaitReadsOnWhenDataArrivedBeforeIt(t *testing.T) {
	s := newSet(t, 1)
	a, b := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	require.Equal(t, 0, drain(&ep, a))
	_, err := syscall.Write(b, []byte("x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ep.pend.Load() }, 5*time.Second, time.Millisecond)
	tk := newTask()
	require.False(t, ep.Wait(&Waiter{Task: tk}), "data signalled since the last read: read on")
	require.Equal(t, 1, drain(&ep, a))
	require.Zero(t, tk.counts.Load())
}

func TestShortReadIsDrainedButFullReadIsNot(t *testing.T) {
	s := newSet(t, 1)
	a, b := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	_, err := syscall.Write(b, []byte("12345678"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ep.pend.Load() }, 5*time.Second, time.Millisecond)
	buf := make([]byte, 4)
	ep.ReadStart()
	n, err := syscall.Read(a, buf)
	require.NoError(t, err)
	ep.ReadDone(n < len(buf))
	require.False(t, ep.Wait(&Waiter{Task: newTask()}), "a full read may have left data")
	require.Equal(t, 4, drain(&ep, a))
}

func TestHangUpIsNeverWaitedFor(t *testing.T) {
	s := newSet(t, 1)
	a, b := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	_, err := syscall.Write(b, []byte("ab"))
	require.NoError(t, err)
	require.NoError(t, syscall.Shutdown(b, syscall.SHUT_WR))
	require.Eventually(t, func() bool { return ep.hup.Load() }, 5*time.Second, time.Millisecond)
	require.Equal(t, 2, drain(&ep, a)) // a short read: the end of the stream is still to read
	require.False(t, ep.Wait(&Waiter{Task: newTask()}), "the end of the stream is readable and will not be signalled again")
}

func TestWakeRunsTheWaiterOnAGoroutine(t *testing.T) {
	s := newSet(t, 1)
	a, _ := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	drain(&ep, a)
	tk := newTask()
	require.True(t, ep.Wait(&Waiter{Task: tk}))
	require.True(t, ep.Waiting())
	require.True(t, ep.Wake())
	require.Nil(t, <-tk.ran, "woken on a goroutine of its own")
	require.False(t, ep.Wake(), "nothing left to wake")
	require.False(t, ep.Waiting())
}

func TestRemoveWakesAndStaleEventsFindNothing(t *testing.T) {
	s := newSet(t, 1)
	a, b := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	drain(&ep, a)
	tk := newTask()
	require.True(t, ep.Wait(&Waiter{Task: tk}))
	ep.Remove()
	require.Nil(t, <-tk.ran)
	require.False(t, ep.Registered())
	slot, gen := ep.slot, ep.gen
	require.Nil(t, s.slots.lookup(slot, gen), "the slot's generation moved on")
	_, err := syscall.Write(b, []byte("late"))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	require.Zero(t, len(tk.ran))

	var ep2 Endpoint
	require.NoError(t, s.Add(&ep2, a))
	require.Equal(t, slot, ep2.slot, "the slot is reused")
	require.NotEqual(t, gen, ep2.gen)
	ep2.Remove()
}

// TestDetachLetsTheLoopGoOn: a waiter that blocks after Detach does not hold the loop;
// one that blocks without it is detached by the watchdog.
func TestDetachLetsTheLoopGoOn(t *testing.T) {
	for _, announced := range []bool{true, false} {
		name := map[bool]string{true: "detached", false: "watchdog"}[announced]
		t.Run(name, func(t *testing.T) {
			s := newSet(t, 1)
			a1, b1 := socketPair(t)
			a2, b2 := socketPair(t)
			var ep1, ep2 Endpoint
			require.NoError(t, s.Add(&ep1, a1))
			require.NoError(t, s.Add(&ep2, a2))
			drain(&ep1, a1)
			drain(&ep2, a2)
			release := make(chan struct{})
			blocker := newTask()
			blocker.onRun = func(w *Worker) {
				if announced {
					w.Detach()
				}
				<-release
			}
			other := newTask()
			require.True(t, ep1.Wait(&Waiter{Task: blocker}))
			require.True(t, ep2.Wait(&Waiter{Task: other}))
			_, err := syscall.Write(b1, []byte("1"))
			require.NoError(t, err)
			require.Eventually(t, func() bool { return blocker.counts.Load() == 1 }, 5*time.Second, time.Millisecond)
			_, err = syscall.Write(b2, []byte("2"))
			require.NoError(t, err)
			select {
			case w := <-other.ran:
				require.NotNil(t, w)
			case <-time.After(5 * time.Second):
				t.Fatal("the loop is held by a blocked waiter")
			}
			close(release)
			<-blocker.ran
			st := s.Stats()
			require.Equal(t, uint64(1), st.Detached)
			if announced {
				require.Zero(t, st.Watchdog)
			} else {
				require.Equal(t, uint64(1), st.Watchdog)
			}
		})
	}
}

func TestRemoveAfterCloseAndAddFails(t *testing.T) {
	s, err := New(2)
	require.NoError(t, err)
	a, _ := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	s.Close()
	s.Close() // twice is fine
	ep.Remove()
	require.False(t, ep.Registered())
	var ep2 Endpoint
	require.ErrorIs(t, s.Add(&ep2, a), ErrClosed)
}

// TestPostRunsOnTheLoop: a posted waiter runs on the endpoint's loop, woken from its wait,
// and a waiter posted to an endpoint in no loop runs on a goroutine of its own.
func TestPostRunsOnTheLoop(t *testing.T) {
	s := newSet(t, 1)
	a, _ := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	time.Sleep(20 * time.Millisecond) // the loop gives its kept waits up and blocks
	tk := newTask()
	for range 3 {
		ep.Post(&Waiter{Task: tk})
		select {
		case w := <-tk.ran:
			require.NotNil(t, w, "run by the loop")
		case <-time.After(5 * time.Second):
			t.Fatal("a posted waiter did not run")
		}
	}
	var loose Endpoint
	loose.Post(&Waiter{Task: tk})
	require.Nil(t, <-tk.ran, "no loop: a goroutine of its own")
}

// TestKeptWaitLetsOthersRun: with one processor, a loop that keeps it while it waits, and
// one kept busy by a socket that is always readable, still let other goroutines run and a
// garbage collection finish.
func TestKeptWaitLetsOthersRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := newSet(t, 1)
	a, b := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	stop := make(chan struct{})
	defer close(stop)
	// The loop's waiter reads what comes and waits again; the writer keeps it coming.
	var runs atomic.Int64
	busy := &funcTask{}
	wt := &Waiter{Task: busy}
	busy.f = func(w *Worker) {
		runs.Add(1)
		drain(&ep, a)
		select {
		case <-stop:
		default:
			ep.Wait(wt)
		}
	}
	drain(&ep, a)
	require.True(t, ep.Wait(wt))
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = syscall.Write(b, []byte("x"))
			runtime.Gosched()
		}
	}()
	for _, phase := range []string{"busy", "idle"} {
		done := make(chan struct{})
		go func() {
			ping := make(chan int)
			go func() {
				for i := range 100 {
					ping <- i
				}
				close(ping)
			}()
			for range ping {
			}
			runtime.GC()
			time.Sleep(time.Millisecond)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s loop: other goroutines and the GC did not get the processor", phase)
		}
		if phase == "busy" {
			require.Positive(t, runs.Load(), "the loop ran events meanwhile")
		}
	}
}

// funcTask runs f.
type funcTask struct{ f func(w *Worker) }

func (t *funcTask) RunReady(w *Worker) { t.f(w) }

// TestPostedRunsAfterClose: a waiter posted to a loop that stops before running it still
// runs, on a goroutine of its own.
func TestPostedRunsAfterClose(t *testing.T) {
	s, err := New(1)
	require.NoError(t, err)
	a, _ := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	// Hold the loop on an event while a waiter is posted behind it, then stop the set.
	hold, release := make(chan struct{}), make(chan struct{})
	holder := &funcTask{f: func(*Worker) { close(hold); <-release }}
	l := ep.l.Load()
	ep.Post(&Waiter{Task: holder})
	<-hold
	tk := newTask()
	ep.Post(&Waiter{Task: tk})
	l.mu.Lock()
	l.stopped = true // as Close does, before it wakes the loop
	l.mu.Unlock()
	close(release)
	select {
	case <-tk.ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter posted before the loop stopped never ran")
	}
	s.Close()
}

// TestWatchdogRestsWhileIdle: with every loop waiting the watchdog stops waking; a worker
// then held by a waiter that blocks without announcing it still gets detached.
func TestWatchdogRestsWhileIdle(t *testing.T) {
	s := newSet(t, 2)
	require.Eventually(t, s.resting.Load, 5*time.Second, time.Millisecond, "idle loops: the watchdog rests")
	a, b := socketPair(t)
	var ep Endpoint
	require.NoError(t, s.Add(&ep, a))
	drain(&ep, a)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the Set closes
	blocker := newTask()
	blocker.onRun = func(*Worker) { <-release }
	require.True(t, ep.Wait(&Waiter{Task: blocker}))
	_, err := syscall.Write(b, []byte("1"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().Watchdog == 1 }, 5*time.Second, time.Millisecond,
		"a worker held from rest is detached by the watchdog")
	releaseOnce.Do(func() { close(release) })
	<-blocker.ran
	require.Eventually(t, s.resting.Load, 5*time.Second, time.Millisecond, "idle again: the watchdog rests again")
}
