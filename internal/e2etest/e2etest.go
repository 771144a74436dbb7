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

// The Prometheus and Alertmanager the tests meet: the releases users run now,
// which scripts/build-prometheus.sh builds from the Go module proxy into
// ~/.cache/tokenwatch/<dir>/<name>. The environment variable names another
// binary (say Debian's /usr/bin/prometheus, to try an older release);
// scripts/test.sh sets each to what it built. A test asserts that these
// versions are the script's.
var builtTools = map[string]struct{ env, dir string }{
	"prometheus":   {"PROMETHEUS_BIN", "prometheus-" + PrometheusModule},
	"promtool":     {"PROMTOOL_BIN", "prometheus-" + PrometheusModule},
	"alertmanager": {"ALERTMANAGER_BIN", "alertmanager-" + AlertmanagerModule},
	"amtool":       {"AMTOOL_BIN", "alertmanager-" + AlertmanagerModule},
}

// The module versions scripts/build-prometheus.sh builds: Prometheus 3.16.0
// (Prometheus tags its Go module v0.3XX.Y for release 3.XX.Y) and
// Alertmanager 0.35.0.
const (
	PrometheusModule   = "v0.316.0"
	AlertmanagerModule = "v0.35.0"
)

// Tool finds a peer's binary under the Missing policy: the test skips
// without it, or fails under CI=true, where scripts/test.sh must have
// provided it. prometheus, promtool, alertmanager and amtool are the ones
// scripts/build-prometheus.sh builds ($PROMETHEUS_BIN, $PROMTOOL_BIN,
// $ALERTMANAGER_BIN, $AMTOOL_BIN, else the script's cache), never whatever
// release PATH holds; any other tool comes from PATH, installed from the
// Debian package pkg.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	built, ok := builtTools[name]
	if !ok {
		p, err := exec.LookPath(name)
		if err != nil {
			Missing(t, name, "apt-get install "+pkg+"; scripts/test.sh installs it")
		}
		return p
	}
	path := os.Getenv(built.env)
	if path == "" {
		if cache, err := os.UserCacheDir(); err == nil {
			path = filepath.Join(cache, "tokenwatch", built.dir, name)
		}
	}
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return path
	}
	Missing(t, fmt.Sprintf("%s (%s or %q)", name, built.env, path),
		"build it with scripts/build-prometheus.sh, or run ./scripts/test.sh, which does")
	return ""
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
