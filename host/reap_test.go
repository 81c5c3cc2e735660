//go:build linux

package host_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/modelslot/modelslot/host"
)

// TestReapOrphans: a daemon killed with SIGKILL leaves its servers
// running; the next Host on the same directory finds and stops them, and
// leaves alone the servers of a Host on another directory.
func TestReapOrphans(t *testing.T) {
	old, dir := newHost(t)
	p := start(t, old, host.Spec{ID: "orphan", Command: helperCommand(t, "CHILD=1")})
	waitHealthy(t, p)
	pid, _ := strconv.Atoi(get(t, p.URL()+"/pid"))
	child, _ := strconv.Atoi(get(t, p.URL()+"/child"))
	other, _ := newHost(t)
	q := start(t, other, host.Spec{ID: "other", Command: helperCommand(t, "")})
	waitHealthy(t, q)
	otherPID, _ := strconv.Atoi(get(t, q.URL()+"/pid"))

	next := host.New(slog.New(slog.NewTextHandler(io.Discard, nil)), dir)
	defer next.Close(context.Background())
	if n := next.ReapOrphans(); n < 1 {
		t.Fatalf("ReapOrphans stopped %d processes, want the orphan", n)
	}
	eventually(t, "the orphan and its child to be gone", func() bool { return !alive(pid) && !alive(child) })
	if !alive(otherPID) {
		t.Fatal("ReapOrphans killed a process of another host")
	}
}
