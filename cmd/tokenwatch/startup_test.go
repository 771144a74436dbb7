package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// startupDaemon runs runDaemon in-process with a configuration loader the
// test controls; stop ends it and returns its exit code.
type startupDaemon struct {
	addr string
	logs *e2etest.Buffer
	code chan int
	stop func() int
}

func runStartupDaemon(t *testing.T, load func() (*configs.Config, error)) *startupDaemon {
	t.Helper()
	d := &startupDaemon{addr: e2etest.FreeAddr(t), logs: &e2etest.Buffer{}, code: make(chan int, 1)}
	listen, systemd, webConfig := []string{d.addr}, false, ""
	end := make(chan struct{})
	endOnce := sync.OnceFunc(func() { close(end) })
	go func() {
		d.code <- runDaemon(daemonOptions{
			logger:  slog.New(slog.NewTextHandler(d.logs, nil)),
			web:     &web.FlagConfig{WebListenAddresses: &listen, WebSystemdSocket: &systemd, WebConfigFile: &webConfig},
			load:    load,
			storage: t.TempDir(),
			// An actor the test ends, as a signal would.
			extra: []actor{{execute: func() error { <-end; return nil }, interrupt: func(error) { endOnce() }}},
		})
	}()
	var once sync.Once
	var code int
	d.stop = func() int {
		once.Do(func() {
			endOnce()
			select {
			case code = <-d.code:
			case <-time.After(30 * time.Second):
				t.Fatal("the daemon did not stop within 30s")
			}
		})
		return code
	}
	t.Cleanup(func() { d.stop() })
	return d
}

func (d *startupDaemon) status(path string) int {
	resp, err := http.Get("http://" + d.addr + path)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// The web server answers before the first configuration is loaded and
// applied (with 10,000 orgs that takes seconds): /metrics and /-/healthy at
// once, /-/ready and /probe with 503 until the orgs are there.
func TestListensBeforeTheFirstConfigurationIsApplied(t *testing.T) {
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	d := runStartupDaemon(t, func() (*configs.Config, error) {
		<-release
		// A closed loopback port: the org's first check fails at once.
		return configs.Parse([]byte("orgs:\n  - name: a\n    url: http://127.0.0.1:1\n    schedule: \"@every 1h\"\n"+
			"    client: {id: a, secret: s}\n    grant: {type: client_credentials}\n"), t.TempDir(), nil)
	})
	e2etest.WaitFor(t, 10*time.Second, "the web server to listen", func() bool { return d.status("/-/healthy") == http.StatusOK })
	for path, want := range map[string]int{
		"/metrics":     http.StatusOK,
		"/-/ready":     http.StatusServiceUnavailable,
		"/probe?org=a": http.StatusServiceUnavailable,
	} {
		if got := d.status(path); got != want {
			t.Errorf("%s before the configuration is applied: %d, want %d", path, got, want)
		}
	}
	releaseOnce()
	e2etest.WaitFor(t, 10*time.Second, "the daemon to be ready", func() bool { return d.status("/-/ready") == http.StatusOK })
	if got := d.status("/probe?org=a"); got != http.StatusOK {
		t.Errorf("/probe?org=a once ready: %d, want 200", got)
	}
	if code := d.stop(); code != exitOK {
		t.Errorf("exit %d after a clean stop, want %d\n%s", code, exitOK, d.logs)
	}
}

// A configuration refused at start still ends the daemon with its problems
// logged, though the web server was already up.
func TestBadConfigurationAtStartExits(t *testing.T) {
	d := runStartupDaemon(t, func() (*configs.Config, error) {
		return configs.Parse([]byte("orgs:\n  - name: a\n    url: not a url\n"), t.TempDir(), nil)
	})
	var code int
	select {
	case code = <-d.code:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not exit within 30s of a bad configuration")
	}
	if code != exitUnhealthy {
		t.Errorf("exit %d, want %d", code, exitUnhealthy)
	}
	logs := d.logs.String()
	if !strings.Contains(logs, "cannot load the configuration") || !strings.Contains(logs, "orgs[0].url") {
		t.Errorf("the problems are not logged:\n%s", logs)
	}
	if strings.Contains(logs, "tokenwatch stopped") && strings.Contains(logs, errStartConfig.Error()) {
		t.Errorf("the refusal is logged twice:\n%s", logs)
	}
	// Already exited: the cleanup's stop takes the code again.
	d.code <- code
}
