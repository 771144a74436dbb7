// Package e2etest holds what the end-to-end tests share: building the
// tokenwatch binary once, finding the real peers the test set-up installs,
// free loopback ports, a log buffer safe for concurrent writers, and waiting
// for a condition.
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

// Tool finds a peer's binary on PATH. Without it the test skips, except
// under CI=true, where scripts/test.sh must have installed it (from the
// Debian package named pkg).
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; scripts/test.sh installs Debian's %s package", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s): skipping", name, pkg)
	}
	return p
}

var build struct {
	once sync.Once
	path string
	err  error
}

// Tokenwatch builds the command once per test process and returns its path.
func Tokenwatch(t testing.TB) string {
	t.Helper()
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
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// WaitFor polls cond until it holds, failing the test after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
