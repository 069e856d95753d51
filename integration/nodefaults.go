package integration

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// ErrContainerBackendOnly is returned by the operations that only the container backend
// offers, such as DisconnectNode.
var ErrContainerBackendOnly = errors.New("integration: this operation needs the container backend")

// Backend returns BackendLocal or BackendContainer: where c's servers run.
func (c *Cluster) Backend() string {
	if c.docker != nil {
		return BackendContainer
	}
	return BackendLocal
}

// PauseNode freezes every process of a running node, as a machine that stops answering would:
// its connections stay open and nothing moves on them until ResumeNode. The local backend sends
// SIGSTOP to the postmaster and every process it started; the container backend pauses the
// container (docker pause). Pausing a paused node does nothing. StopNode, KillNode and Stop
// resume a paused node first.
func (c *Cluster) PauseNode(n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	c.mu.Lock()
	running, paused := n.running, n.paused
	c.mu.Unlock()
	if !running {
		return fmt.Errorf("integration: pause %s: node is stopped", n.Name)
	}
	if paused {
		return nil
	}
	var err error
	if c.docker != nil {
		err = c.docker.pauseNode(n, true)
	} else {
		err = c.signalServer(n, syscall.SIGSTOP)
	}
	if err != nil {
		return fmt.Errorf("integration: pause %s: %w", n.Name, err)
	}
	c.mu.Lock()
	n.paused = true
	c.mu.Unlock()
	c.logf("integration: paused %s", n.Name)
	return nil
}

// ResumeNode thaws a node frozen by PauseNode. Resuming a node that is not paused does nothing.
func (c *Cluster) ResumeNode(n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	return c.resume(n)
}

// resume is ResumeNode without the check, for Stop.
func (c *Cluster) resume(n *Node) error {
	c.mu.Lock()
	paused := n.paused
	c.mu.Unlock()
	if !paused {
		return nil
	}
	var err error
	if c.docker != nil {
		err = c.docker.pauseNode(n, false)
	} else {
		err = c.signalServer(n, syscall.SIGCONT)
	}
	if err != nil {
		return fmt.Errorf("integration: resume %s: %w", n.Name, err)
	}
	c.mu.Lock()
	n.paused = false
	c.mu.Unlock()
	c.logf("integration: resumed %s", n.Name)
	return nil
}

// signalServer sends sig to n's postmaster and every process it started.
func (c *Cluster) signalServer(n *Node, sig syscall.Signal) error {
	pid, err := postmasterPID(n)
	if err != nil {
		return err
	}
	for _, p := range append([]int{pid}, childPIDs(pid)...) {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	return nil
}

// DisconnectNode takes a node's container off the cluster's Docker network (docker network
// disconnect): a real partition. The other nodes cannot reach it nor it them, its host port
// answers nothing, and connections open through it hang. ReconnectNode heals it. The local
// backend returns ErrContainerBackendOnly. Disconnecting a disconnected node does nothing.
func (c *Cluster) DisconnectNode(n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	if c.docker == nil {
		return fmt.Errorf("%w: DisconnectNode of %s", ErrContainerBackendOnly, n.Name)
	}
	c.mu.Lock()
	disconnected := n.disconnected
	c.mu.Unlock()
	if disconnected {
		return nil
	}
	if err := c.docker.connectNode(n, false); err != nil {
		return fmt.Errorf("integration: disconnect %s: %w", n.Name, err)
	}
	c.mu.Lock()
	n.disconnected = true
	c.mu.Unlock()
	c.logf("integration: disconnected %s from the network", n.Name)
	return nil
}

// ReconnectNode puts a node disconnected by DisconnectNode back on the cluster's network,
// under its name, and waits until its server accepts connections on its host port again.
// Reconnecting a connected node does nothing.
func (c *Cluster) ReconnectNode(ctx context.Context, n *Node) error {
	if err := c.check(n); err != nil {
		return err
	}
	if c.docker == nil {
		return fmt.Errorf("%w: ReconnectNode of %s", ErrContainerBackendOnly, n.Name)
	}
	c.mu.Lock()
	disconnected, running := n.disconnected, n.running
	c.mu.Unlock()
	if !disconnected {
		return nil
	}
	if err := c.docker.connectNode(n, true); err != nil {
		return fmt.Errorf("integration: reconnect %s: %w", n.Name, err)
	}
	c.mu.Lock()
	n.disconnected = false
	c.mu.Unlock()
	c.logf("integration: reconnected %s to the network", n.Name)
	if !running {
		return nil
	}
	if err := c.poll(ctx, n, readyTimeout, "SELECT 1", nil); err != nil {
		return fmt.Errorf("integration: reconnect %s: %w", n.Name, err)
	}
	return nil
}
