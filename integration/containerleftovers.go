package integration

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ownerLabel is the value of LabelOwner on what this process makes: "HOSTNAME/PID".
func ownerLabel() string {
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(os.Getpid())
}

// leftoversOnce makes removeLeftovers run once per process.
var leftoversOnce sync.Once

// removeLeftovers removes, once per process, the containers and networks that a process of
// this machine made and left behind when it died before its Stop (a killed test binary, a
// test that timed out). A failure only costs space: it is logged, not returned.
func removeLeftovers(ctx context.Context, e ContainerEngine, logf func(format string, args ...any)) {
	leftoversOnce.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		n, err := e.RemoveLabeled(ctx, LabelOwner, ownerGone)
		if err != nil {
			logf("integration: remove leftover containers: %v", err)
		}
		if n > 0 {
			logf("integration: removed %d leftover container(s) and network(s) of dead processes", n)
		}
	})
}

// ownerGone reports whether the LabelOwner value owner names a process of this machine that
// no longer runs. Owners on other machines, which share a remote engine, are never gone.
func ownerGone(owner string) bool {
	host, pidText, ok := strings.Cut(owner, "/")
	me, _ := os.Hostname()
	if !ok || host != me {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
