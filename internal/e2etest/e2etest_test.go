package e2etest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// recordingTB notes what Missing asked of the test instead of doing it.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recordingTB) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestMissingSkipsAndSaysSoButFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &recordingTB{TB: t}
	Missing(r, "promtool", "apt-get install prometheus")
	if r.failed != "" || !strings.Contains(r.skipped, "promtool is missing (apt-get install prometheus)") {
		t.Errorf("without CI: skipped %q, failed %q; want a skip that names the component and how to get it", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r = &recordingTB{TB: t}
	Missing(r, "promtool", "apt-get install prometheus")
	if r.skipped != "" || !strings.Contains(r.failed, "promtool is missing") || !strings.Contains(r.failed, "CI=true") {
		t.Errorf("under CI=true: skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
}

func TestToolFollowsThePolicy(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "true")
	r := &recordingTB{TB: t}
	Tool(r, "no-such-tool", "no-such-package")
	if r.skipped != "" || !strings.Contains(r.failed, "apt-get install no-such-package") {
		t.Errorf("a missing tool under CI=true: skipped %q, failed %q; want a failure naming the package", r.skipped, r.failed)
	}
}

// Prometheus and Alertmanager come from the build script's cache or the
// environment variable, never from PATH, where an older release may sit.
func TestToolFindsTheBuiltPrometheus(t *testing.T) {
	t.Setenv("CI", "true")
	path := t.TempDir()
	t.Setenv("PATH", path)
	for _, name := range []string{"prometheus", "promtool", "alertmanager", "amtool"} {
		if err := os.WriteFile(filepath.Join(path, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("PROMETHEUS_BIN", "")
	t.Setenv("ALERTMANAGER_BIN", "")
	r := &recordingTB{TB: t}
	Tool(r, "prometheus", "prometheus")
	if r.skipped != "" || !strings.Contains(r.failed, "PROMETHEUS_BIN") || !strings.Contains(r.failed, "scripts/build-prometheus.sh") {
		t.Errorf("no built Prometheus under CI=true: skipped %q, failed %q; want a failure naming the variable and the script", r.skipped, r.failed)
	}

	built := filepath.Join(cache, "tokenwatch", "alertmanager-"+AlertmanagerModule, "alertmanager")
	if err := os.MkdirAll(filepath.Dir(built), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(built, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = &recordingTB{TB: t}
	if got := Tool(r, "alertmanager", "prometheus-alertmanager"); got != built || r.failed != "" {
		t.Errorf("Tool(alertmanager) = %q (failed %q), want the script's cache %q", got, r.failed, built)
	}
	t.Setenv("ALERTMANAGER_BIN", filepath.Join(path, "alertmanager"))
	if got := Tool(r, "alertmanager", "prometheus-alertmanager"); got != filepath.Join(path, "alertmanager") {
		t.Errorf("Tool(alertmanager) with ALERTMANAGER_BIN set = %q, want the variable's path", got)
	}
}

// The versions the tests look for are the ones the script builds.
func TestToolVersionsAreTheBuildScripts(t *testing.T) {
	script, err := os.ReadFile("../../scripts/build-prometheus.sh")
	if err != nil {
		t.Fatal(err)
	}
	for variable, want := range map[string]string{"prometheus_module": PrometheusModule, "alertmanager_module": AlertmanagerModule} {
		got := ""
		if m := regexp.MustCompile(`(?m)^` + variable + `=(\S+)$`).FindSubmatch(script); m != nil {
			got = string(m[1])
		}
		if got != want {
			t.Errorf("scripts/build-prometheus.sh sets %s=%q, but the tests look for %s", variable, got, want)
		}
	}
}

// Poll's pauses run on synctest's fake clock: the test takes no time and
// every call is at a known instant.
func TestPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls []time.Duration
		began := time.Now()
		held := Poll(10*time.Second, func() bool {
			calls = append(calls, time.Since(began))
			return len(calls) == 3
		})
		if want := []time.Duration{0, 10 * time.Millisecond, 30 * time.Millisecond}; !held || !slices.Equal(calls, want) {
			t.Errorf("Poll = %v after calls at %v, want true after calls at %v", held, calls, want)
		}

		calls = nil
		began = time.Now()
		held = Poll(50*time.Millisecond, func() bool {
			calls = append(calls, time.Since(began))
			return false
		})
		// Pauses of 10 and 20 ms, then the 20 ms left: a last call at the deadline.
		if want := []time.Duration{0, 10 * time.Millisecond, 30 * time.Millisecond, 50 * time.Millisecond}; held || !slices.Equal(calls, want) {
			t.Errorf("Poll = %v after calls at %v, want false after calls at %v", held, calls, want)
		}
	})
}
