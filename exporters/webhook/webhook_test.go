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
	"github.com/tokenwatch/tokenwatch/internal/alerting"
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

func testAlert(org, status string) alerting.Alert {
	a := alerting.Alert{
		Status:      status,
		Labels:      map[string]string{"alertname": "TokenIntrospectionInactive", "org": org, "reason": "introspection_not_permitted", "severity": "critical", "team": "crm"},
		Annotations: map[string]string{"summary": "Introspection of " + org + " answered inactive", "fix": "Enable Introspect All Tokens"},
		StartsAt:    start,
		EndsAt:      start.Add(4 * time.Minute),
	}
	if status == alerting.StatusResolved {
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
	if retry, err := n.Notify(context.Background(), testAlert("acme", alerting.StatusFiring), testAlert("globex", alerting.StatusResolved)); err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	if h.count() != 2 {
		t.Fatalf("posted %d payloads, want one per org", h.count())
	}
	var p, p1 map[string]any
	if err := json.Unmarshal(h.bodies[0], &p); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(h.bodies[1], &p1); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"version":         "4",
		"status":          "firing",
		"receiver":        "tokenwatch",
		"externalURL":     "http://tokenwatch.example.com:9851/",
		"truncatedAlerts": float64(0),
		"groupKey":        `{}/tokenwatch:{alertname="TokenIntrospectionInactive", org="acme"}`,
	} {
		if p[key] != want {
			t.Errorf("%s = %v, want %v", key, p[key], want)
		}
	}
	if g := p["groupLabels"].(map[string]any); len(g) != 2 || g["alertname"] != "TokenIntrospectionInactive" || g["org"] != "acme" {
		t.Errorf("groupLabels = %v", g)
	}
	if c := p["commonLabels"].(map[string]any); c["team"] != "crm" || c["org"] != "acme" {
		t.Errorf("commonLabels = %v", c)
	}
	if c := p["commonAnnotations"].(map[string]any); c["fix"] != "Enable Introspect All Tokens" || c["summary"] != "Introspection of acme answered inactive" {
		t.Errorf("commonAnnotations = %v", c)
	}
	alerts, alerts1 := p["alerts"].([]any), p1["alerts"].([]any)
	if len(alerts) != 1 || len(alerts1) != 1 {
		t.Fatalf("alerts = %v and %v", alerts, alerts1)
	}
	a0, a1 := alerts[0].(map[string]any), alerts1[0].(map[string]any)
	for _, key := range []string{"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"} {
		if _, ok := a0[key]; !ok {
			t.Errorf("alert lacks %s", key)
		}
	}
	if a0["status"] != "firing" || a0["endsAt"] != "0001-01-01T00:00:00Z" || a0["startsAt"] != "2026-11-26T12:00:00Z" {
		t.Errorf("firing alert: status %v, startsAt %v, endsAt %v (Alertmanager shows no end for firing alerts)", a0["status"], a0["startsAt"], a0["endsAt"])
	}
	if p1["status"] != "resolved" || a1["status"] != "resolved" || a1["endsAt"] != "2026-11-26T12:03:00Z" {
		t.Errorf("resolved payload: status %v; alert status %v, endsAt %v", p1["status"], a1["status"], a1["endsAt"])
	}
	if a0["fingerprint"] != alerting.Fingerprint(testAlert("acme", "").Labels) {
		t.Errorf("fingerprint = %v", a0["fingerprint"])
	}
	if _, signed := h.headers[0][SignatureHeader]; signed {
		t.Errorf("signed without a secret")
	}

	// Only resolved alerts: the payload is resolved.
	if _, err := n.Notify(context.Background(), testAlert("acme", alerting.StatusResolved)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(h.bodies[2]), `"status":"resolved","receiver"`) {
		t.Errorf("resolved payload: %s", h.bodies[2])
	}
}

// A batch that mixes orgs must not put one org's resolve in a payload whose
// status is firing or whose groupKey differs from that org's firing payload:
// a receiver acting on either would never close the alert.
func TestPayloadPerAlertGroup(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, err := New(Options{URL: srv.URL, SendResolved: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := n.Notify(ctx, testAlert("acme", alerting.StatusFiring)); err != nil {
		t.Fatal(err)
	}
	expiring := testAlert("acme", alerting.StatusFiring)
	expiring.Labels["alertname"] = "TokenExpiresSoon"
	if _, err := n.Notify(ctx, testAlert("globex", alerting.StatusFiring), testAlert("acme", alerting.StatusResolved), expiring); err != nil {
		t.Fatal(err)
	}
	type payload struct {
		Status       string            `json:"status"`
		GroupKey     string            `json:"groupKey"`
		GroupLabels  map[string]string `json:"groupLabels"`
		CommonLabels map[string]string `json:"commonLabels"`
		Alerts       []alerting.Alert  `json:"alerts"`
	}
	var ps []payload
	for _, b := range h.bodies {
		var p payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) != 4 {
		t.Fatalf("posted %d payloads, want 4 (one, then one per alertname and org)", len(ps))
	}
	for i, p := range ps {
		if len(p.Alerts) != 1 || p.Status != p.Alerts[0].Status {
			t.Errorf("payload %d: status %s with alerts %v", i, p.Status, p.Alerts)
			continue
		}
		a := p.Alerts[0]
		if p.GroupLabels["org"] != a.Labels["org"] || p.GroupLabels["alertname"] != a.Name() || p.CommonLabels["org"] != a.Labels["org"] {
			t.Errorf("payload %d: groupLabels %v, commonLabels %v for alert %v", i, p.GroupLabels, p.CommonLabels, a.Labels)
		}
	}
	fired, resolvedAcme := ps[0], ps[2]
	if resolvedAcme.Status != alerting.StatusResolved || resolvedAcme.Alerts[0].Labels["org"] != "acme" {
		t.Fatalf("third payload is not acme's resolve: %+v", resolvedAcme)
	}
	if fired.GroupKey != resolvedAcme.GroupKey {
		t.Errorf("acme's resolve has groupKey %q, its firing payload %q", resolvedAcme.GroupKey, fired.GroupKey)
	}
	if ps[1].GroupKey == fired.GroupKey || ps[3].GroupKey == fired.GroupKey {
		t.Errorf("another group shares acme's groupKey %q", fired.GroupKey)
	}
}

// A receiver's error page that echoes the request path (Express: "Cannot
// POST /hooks/...") must not put the token of the path into the error.
func TestErrorHidesURLPathAndQuery(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Cannot POST "+r.URL.RequestURI(), http.StatusNotFound)
	}))
	defer srv.Close()
	n, err := New(Options{URL: srv.URL + "/hooks/T0/B0/SeCrEt?token=QuErYtOkEn"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.Notify(context.Background(), testAlert("acme", alerting.StatusFiring))
	if err == nil {
		t.Fatal("a 404 was accepted")
	}
	if strings.Contains(err.Error(), "SeCrEt") || strings.Contains(err.Error(), "QuErYtOkEn") {
		t.Errorf("error leaks the URL path or query: %v", err)
	}
	if !strings.Contains(err.Error(), "HTTP 404: Cannot POST <redacted>") {
		t.Errorf("error = %v, want the answer with the path redacted", err)
	}
}

func TestSignature(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, _ := New(Options{URL: srv.URL, Secret: canaryKey, SendResolved: true})
	if _, err := n.Notify(context.Background(), testAlert("acme", alerting.StatusFiring)); err != nil {
		t.Fatal(err)
	}
	sig := h.headers[0].Get(SignatureHeader)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature header = %q", sig)
	}
	if want := Sign([]byte(canaryKey), h.bodies[0]); sig != want {
		t.Errorf("signature header = %q, want %q, the signature of the body sent", sig, want)
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

// Sign is checked against known answers computed outside Go, so that Sign
// and Verify cannot agree on a wrong algorithm. The first vector is RFC 4231,
// test case 2; the second was computed once with
//
//	printf '%s' '{"version":"4","status":"firing","receiver":"tokenwatch"}' |
//	  openssl dgst -sha256 -hmac 'CANARYwebhookHMACkey9f8e'
func TestSignKnownAnswers(t *testing.T) {
	for _, tc := range []struct{ key, body, want string }{
		{"Jefe", "what do ya want for nothing?",
			"sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{canaryKey, `{"version":"4","status":"firing","receiver":"tokenwatch"}`,
			"sha256=d3b9b75430846296251f820dab773c4ff8366658442711d069c846f43d3c9a57"},
	} {
		if got := Sign([]byte(tc.key), []byte(tc.body)); got != tc.want {
			t.Errorf("Sign(%q, %q) = %s, want %s", tc.key, tc.body, got, tc.want)
		}
		if !Verify([]byte(tc.key), []byte(tc.body), tc.want) {
			t.Errorf("Verify refuses the known answer for %q", tc.body)
		}
	}
}

func TestSendResolvedFalse(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n, _ := New(Options{URL: srv.URL, SendResolved: false})
	if _, err := n.Notify(context.Background(), testAlert("acme", alerting.StatusResolved)); err != nil {
		t.Fatal(err)
	}
	if h.count() != 0 {
		t.Errorf("a resolved-only batch was posted with send_resolved false")
	}
	if _, err := n.Notify(context.Background(), testAlert("acme", alerting.StatusResolved), testAlert("globex", alerting.StatusFiring)); err != nil {
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
		retry, err := n.Notify(context.Background(), testAlert("acme", alerting.StatusFiring))
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
	r.Send(alerting.Message{Alert: testAlert("acme", alerting.StatusResolved), Accepted: func(string) { close(done) }})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the resolve was not delivered after two 5xx answers")
	}
	if h.count() != 3 {
		t.Errorf("attempts = %d, want 3", h.count())
	}
}
