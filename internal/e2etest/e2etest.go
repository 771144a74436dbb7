// Package e2etest holds what the tests share: the one skip policy for real
// components (Missing, Tool), building the tokenwatch binary once, free
// loopback ports, a log buffer safe for concurrent writers, and the one
// helper that waits for a condition by polling (Poll, WaitFor), for peers
// that cannot signal.
package e2etest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Buffer collects a process's output; safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr returns a loopback address with a port nothing listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// InCI reports whether the tests run under CI=true, where every real
// component a test needs must be there.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing is the one skip policy: a test whose real component (promtool,
// Prometheus, Alertmanager, Chromium, Hydra, the go command) is absent
// skips and says which and how to get it, except under CI=true, where the
// absence fails the test. what names the component, how says how to get it.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is missing (%s); under CI=true a missing component is a failure", what, how)
		return
	}
	t.Skipf("%s is missing (%s): skipping", what, how)
}

// Tool finds a peer's binary on PATH, under the Missing policy: the test
// skips without it, or fails under CI=true, where scripts/test.sh must have
// installed it (from the Debian package named pkg).
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, "apt-get install "+pkg+"; scripts/test.sh installs it")
	}
	return p
}

var build struct {
	once sync.Once
	path string
	err  error
}

// Tokenwatch builds the command once per test process and returns its path.
// Without the go command the test skips (Missing); a build that fails is a
// failure, never a skip.
func Tokenwatch(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		Missing(t, "the go command", "put the Go toolchain on PATH")
	}
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "tokenwatch-e2e-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "tokenwatch")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", build.path, "github.com/tokenwatch/tokenwatch/cmd/tokenwatch").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// Poll calls cond until it holds or d has passed, and reports whether it
// held; cond is called once more at the deadline. The pause between calls
// starts at 10 ms and doubles up to 200 ms. It is the tests' one poll, for
// what cannot signal: real processes and servers, counters of a fake
// server. Where the code under test can tell (an observer, a recorder, a
// channel), wait on that instead.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	pause := 10 * time.Millisecond
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left))
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// WaitFor polls cond until it holds, failing the test after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}
