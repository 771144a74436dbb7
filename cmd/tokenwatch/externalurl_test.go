package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/exporters/webhook"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

func TestExternalURL(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag   string
		listen []string
		want   string
	}{
		{"https://tokenwatch.example.com/", nil, "https://tokenwatch.example.com"},
		{"https://proxy.example.com/tokenwatch/", []string{":9851"}, "https://proxy.example.com/tokenwatch"},
		{"http://10.0.0.7:9851", nil, "http://10.0.0.7:9851"},
		{"", []string{":9851"}, "http://" + host + ":9851"},
		{"", []string{"127.0.0.1:9900", ":9901"}, "http://" + host + ":9900"},
	} {
		got, err := externalURL(tc.flag, tc.listen)
		if err != nil || got != tc.want {
			t.Errorf("externalURL(%q, %q) = %q, %v; want %q", tc.flag, tc.listen, got, err, tc.want)
		}
	}
	for _, bad := range []string{"tokenwatch.example.com", "/tokenwatch", "ftp://x/", "https://u:p@x/", "https://x/?a=b", "http://x/#f"} {
		if got, err := externalURL(bad, nil); err == nil {
			t.Errorf("externalURL(%q) = %q, want an error", bad, got)
		}
	}
}

// A malformed --web.external-url is a usage error, before anything starts.
func TestExternalURLFlagIsChecked(t *testing.T) {
	var stdout, stderr strings.Builder
	code := realMain([]string{"run", "--config.file=/nonexistent", "--web.external-url=tokenwatch.example.com"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--web.external-url") {
		t.Errorf("exit %d, stderr %q; want %d and a word about --web.external-url", code, stderr.String(), exitUsage)
	}
}

// The demo's alerts link back to tokenwatch under --web.external-url: the
// webhook payload's externalURL, and each alert's generatorURL, the org's
// row on the status page.
func TestAlertsLinkToExternalURL(t *testing.T) {
	hook := &hookReceiver{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	addr := e2etest.FreeAddr(t)
	logs := &e2etest.Buffer{}
	const external = "https://tokenwatch.example.com/monitoring"
	cmd := exec.Command(e2etest.Tokenwatch(t), "demo", "--web.listen-address="+addr, "--web.external-url="+external+"/",
		"--demo.webhook-url="+srv.URL+"/alerts", "--demo.schedule=@every 1s")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	var p webhook.Payload
	e2etest.WaitFor(t, 20*time.Second, "the seed org's firing alert at the webhook", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		for _, b := range hook.bodies {
			if err := json.Unmarshal([]byte(b), &p); err == nil && p.GroupLabels["org"] == "seed-password-grant" && p.Status == "firing" {
				return true
			}
		}
		return false
	})
	if p.ExternalURL != external {
		t.Errorf("externalURL = %q, want %q", p.ExternalURL, external)
	}
	for _, a := range p.Alerts {
		if want := external + "/#org-seed-password-grant"; a.GeneratorURL != want {
			t.Errorf("generatorURL = %q, want %q", a.GeneratorURL, want)
		}
		if !strings.HasPrefix(a.Annotations["runbook_url"], "https://github.com/tokenwatch/tokenwatch/blob/main/docs/alerting.md#") {
			t.Errorf("runbook_url = %q", a.Annotations["runbook_url"])
		}
	}
	// The fragment is the org's row on the status page.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `id="org-seed-password-grant"`) {
		t.Errorf("the status page has no element with the id the generatorURL points at")
	}
}
