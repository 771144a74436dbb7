package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/exporters/notify"
)

const canaryKey = "CANARYwebhookHMACkey9f8e"

type hook struct {
	mu       sync.Mutex
	bodies   [][]byte
	headers  []http.Header
	statuses []int // answered in order; 200 after the last
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodies = append(h.bodies, b)
	h.headers = append(h.headers, r.Header.Clone())
	status := http.StatusOK
	if len(h.statuses) > 0 {
		status, h.statuses = h.statuses[0], h.statuses[1:]
	}
	w.WriteHeader(status)
}

func (h *hook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

var start = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func testAlert(org, status string) notify.Alert {
	a := notify.Alert{
		Status:      status,
		Labels:      map[string]string{"alertname": "TokenIntrospectionInactive", "org": org, "reason": "introspection_not_permitted", "severity": "critical", "team": "crm"},
		Annotations: map[string]string{"summary": "Introspection of " + org + " answered inactive", "fix": "Enable Introspect All Tokens"},
		StartsAt:    start,
		EndsAt:      start.Add(4 * time.Minute),
	}
	if status == notify.StatusResolved {
		a.EndsAt = start.Add(3 * time.Minute)
	}
	return a
}

func TestPayloadHasAlertmanagersShape(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, err := New(Options{URL: srv.URL + "/hook", SendResolved: true, ExternalURL: "http://tokenwatch.example.com:9851/"})
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := n.Notify(context.Background(), testAlert("acme", notify.StatusFiring), testAlert("globex", notify.StatusResolved)); err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	var p map[string]any
	if err := json.Unmarshal(h.bodies[0], &p); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"version":         "4",
		"status":          "firing",
		"receiver":        "tokenwatch",
		"externalURL":     "http://tokenwatch.example.com:9851/",
		"truncatedAlerts": float64(0),
		"groupKey":        `{}/tokenwatch:{alertname="TokenIntrospectionInactive"}`,
	} {
		if p[key] != want {
			t.Errorf("%s = %v, want %v", key, p[key], want)
		}
	}
	if g := p["groupLabels"].(map[string]any); len(g) != 1 || g["alertname"] != "TokenIntrospectionInactive" {
		t.Errorf("groupLabels = %v", g)
	}
	if c := p["commonLabels"].(map[string]any); c["team"] != "crm" || c["org"] != nil {
		t.Errorf("commonLabels = %v", c)
	}
	if c := p["commonAnnotations"].(map[string]any); c["fix"] != "Enable Introspect All Tokens" || c["summary"] != nil {
		t.Errorf("commonAnnotations = %v", c)
	}
	alerts := p["alerts"].([]any)
	if len(alerts) != 2 {
		t.Fatalf("alerts = %v", alerts)
	}
	a0, a1 := alerts[0].(map[string]any), alerts[1].(map[string]any)
	for _, key := range []string{"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"} {
		if _, ok := a0[key]; !ok {
			t.Errorf("alert lacks %s", key)
		}
	}
	if a0["status"] != "firing" || a0["endsAt"] != "0001-01-01T00:00:00Z" || a0["startsAt"] != "2026-11-26T12:00:00Z" {
		t.Errorf("firing alert: status %v, startsAt %v, endsAt %v (Alertmanager shows no end for firing alerts)", a0["status"], a0["startsAt"], a0["endsAt"])
	}
	if a1["status"] != "resolved" || a1["endsAt"] != "2026-11-26T12:03:00Z" {
		t.Errorf("resolved alert: status %v, endsAt %v", a1["status"], a1["endsAt"])
	}
	if a0["fingerprint"] != notify.Fingerprint(testAlert("acme", "").Labels) {
		t.Errorf("fingerprint = %v", a0["fingerprint"])
	}
	if _, signed := h.headers[0][SignatureHeader]; signed {
		t.Errorf("signed without a secret")
	}

	// Only resolved alerts: the payload is resolved.
	if _, err := n.Notify(context.Background(), testAlert("acme", notify.StatusResolved)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(h.bodies[1]), `"status":"resolved","receiver"`) {
		t.Errorf("resolved payload: %s", h.bodies[1])
	}
}

func TestSignature(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, _ := New(Options{URL: srv.URL, Secret: canaryKey, SendResolved: true})
	if _, err := n.Notify(context.Background(), testAlert("acme", notify.StatusFiring)); err != nil {
		t.Fatal(err)
	}
	sig := h.headers[0].Get(SignatureHeader)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature header = %q", sig)
	}
	if !Verify([]byte(canaryKey), h.bodies[0], sig) {
		t.Errorf("the signature does not verify with the key")
	}
	if Verify([]byte("another key"), h.bodies[0], sig) {
		t.Errorf("the signature verifies with another key")
	}
	tampered := append([]byte{}, h.bodies[0]...)
	tampered[len(tampered)-2] = ' '
	if Verify([]byte(canaryKey), tampered, sig) {
		t.Errorf("the signature verifies a changed body")
	}
	for i, b := range h.bodies {
		if strings.Contains(string(b), canaryKey) || strings.Contains(h.headers[i].Get(SignatureHeader), canaryKey) {
			t.Errorf("request %d carries the HMAC key", i)
		}
	}
}

func TestSendResolvedFalse(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, _ := New(Options{URL: srv.URL, SendResolved: false})
	if _, err := n.Notify(context.Background(), testAlert("acme", notify.StatusResolved)); err != nil {
		t.Fatal(err)
	}
	if h.count() != 0 {
		t.Errorf("a resolved-only batch was posted with send_resolved false")
	}
	if _, err := n.Notify(context.Background(), testAlert("acme", notify.StatusResolved), testAlert("globex", notify.StatusFiring)); err != nil {
		t.Fatal(err)
	}
	if h.count() != 1 || strings.Contains(string(h.bodies[0]), `"resolved"`) {
		t.Errorf("posted %d payloads: %s", h.count(), h.bodies)
	}
}

func TestFailuresAndRetries(t *testing.T) {
	for _, tc := range []struct {
		status    int
		wantRetry bool
	}{
		{400, false}, {403, false}, {410, false}, {429, true}, {500, true}, {502, true},
	} {
		h := &hook{statuses: []int{tc.status}}
		srv := httptest.NewServer(h)
		n, _ := New(Options{URL: srv.URL + "/T000/B000/XXXXXXXXsecretpath", Secret: canaryKey})
		retry, err := n.Notify(context.Background(), testAlert("acme", notify.StatusFiring))
		srv.Close()
		if err == nil || retry != tc.wantRetry {
			t.Errorf("HTTP %d: retry %v, err %v; want retry %v", tc.status, retry, err, tc.wantRetry)
		}
		if err != nil && (strings.Contains(err.Error(), "secretpath") || strings.Contains(err.Error(), canaryKey)) {
			t.Errorf("error leaks the URL path or key: %v", err)
		}
	}

	// Through the Router: a 5xx is retried until the webhook accepts.
	h := &hook{statuses: []int{500, 503}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, _ := New(Options{URL: srv.URL, SendResolved: true})
	r := notify.NewRouter(notify.RouterOptions{MinBackoff: time.Millisecond})
	defer r.Stop(context.Background())
	r.Update([]notify.Destination{{Name: "webhook", Notifier: n}})
	done := make(chan struct{})
	r.Send(notify.Message{Alert: testAlert("acme", notify.StatusResolved), Accepted: func(string) { close(done) }})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the resolve was not delivered after two 5xx answers")
	}
	if h.count() != 3 {
		t.Errorf("attempts = %d, want 3", h.count())
	}
}
