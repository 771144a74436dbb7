package alertmanager

import (
	"encoding/pem"

	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/exporters/notify"
	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

const (
	canaryPassword = "CANARYamPASSWORD1a2b"
	canaryBearer   = "CANARYamBEARER3c4d"
)

// receiver is an Alertmanager stand-in that records requests.
type receiver struct {
	mu       sync.Mutex
	requests []request
	status   int
	// echo makes error answers repeat the request's Authorization header, as
	// a misbehaving proxy might.
	echo bool
}

type request struct {
	method, path, auth, contentType, userAgent string
	body                                       []byte
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rv.mu.Lock()
	rv.requests = append(rv.requests, request{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), b})
	status := rv.status
	rv.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if rv.echo {
		io.WriteString(w, "refused: "+r.Header.Get("Authorization")+" "+canaryPassword)
	}
}

func (rv *receiver) last(t *testing.T) request {
	t.Helper()
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if len(rv.requests) == 0 {
		t.Fatal("no request received")
	}
	return rv.requests[len(rv.requests)-1]
}

var (
	start = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	fired = alerting.Alert{
		Status:      alerting.StatusFiring,
		Labels:      map[string]string{"alertname": "TokenIntrospectionInactive", "org": "acme", "reason": "introspection_not_permitted", "severity": "critical"},
		Annotations: map[string]string{"summary": "s", "description": "d", "fix": "f"},
		StartsAt:    start,
		EndsAt:      start.Add(4 * time.Minute),
	}
)

func TestNotifyPostsAPIv2Alerts(t *testing.T) {
	rv := &receiver{}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	n, err := New(Options{URL: srv.URL + "/alertmanager/", UserAgent: "tokenwatch/test"})
	if err != nil {
		t.Fatal(err)
	}
	resolvedAlert := fired.Clone()
	resolvedAlert.Status, resolvedAlert.EndsAt = alerting.StatusResolved, start.Add(time.Minute)
	if retry, err := n.Notify(context.Background(), fired, resolvedAlert); err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	req := rv.last(t)
	if req.method != http.MethodPost || req.path != "/alertmanager/api/v2/alerts" || req.contentType != "application/json" ||
		req.userAgent != "tokenwatch/test" || req.auth != "" {
		t.Errorf("request %s %s (content type %q, user agent %q, auth %q)", req.method, req.path, req.contentType, req.userAgent, req.auth)
	}
	var got []map[string]any
	if err := json.Unmarshal(req.body, &got); err != nil {
		t.Fatalf("body is not a JSON array of alerts: %v\n%s", err, req.body)
	}
	if len(got) != 2 {
		t.Fatalf("got %d alerts", len(got))
	}
	for _, key := range []string{"labels", "annotations", "startsAt", "endsAt"} {
		if _, ok := got[0][key]; !ok {
			t.Errorf("alert lacks %s: %s", key, req.body)
		}
	}
	// API v2 takes exactly the postable alert fields.
	for _, key := range []string{"status", "fingerprint"} {
		if _, ok := got[0][key]; ok {
			t.Errorf("alert has %s, which API v2 does not take", key)
		}
	}
	if got[0]["endsAt"] != "2026-11-26T12:04:00Z" || got[1]["endsAt"] != "2026-11-26T12:01:00Z" {
		t.Errorf("endsAt = %v, %v", got[0]["endsAt"], got[1]["endsAt"])
	}
	if l := got[0]["labels"].(map[string]any); l["alertname"] != "TokenIntrospectionInactive" || l["reason"] != "introspection_not_permitted" {
		t.Errorf("labels = %v", l)
	}
}

func TestNotifySendsCredentials(t *testing.T) {
	rv := &receiver{}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"basic auth", Options{HTTPClient: basicAuth()}, "Basic dG9rZW53YXRjaDpDQU5BUllhbVBBU1NXT1JEMWEyYg=="},
		{"bearer token", Options{HTTPClient: promconfig.HTTPClientConfig{
			Authorization: &promconfig.Authorization{Type: "Bearer", Credentials: canaryBearer}}}, "Bearer " + canaryBearer},
		{"none", Options{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.URL = srv.URL
			n, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := n.Notify(context.Background(), fired); err != nil {
				t.Fatal(err)
			}
			if got := rv.last(t).auth; got != tc.want {
				t.Errorf("Authorization = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNotifyOverTLS(t *testing.T) {
	rv := &receiver{}
	srv := httptest.NewUnstartedServer(rv)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()

	n, _ := New(Options{URL: srv.URL})
	if _, err := n.Notify(context.Background(), fired); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("an unknown CA was accepted: %v", err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	n, _ = New(Options{URL: srv.URL, HTTPClient: promconfig.HTTPClientConfig{TLSConfig: promconfig.TLSConfig{CA: string(ca)}}})
	if retry, err := n.Notify(context.Background(), fired); err != nil || retry {
		t.Errorf("Notify with the server's CA = %v, %v", retry, err)
	}
}

func TestNotifyClassifiesFailures(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		status    int
		url       string
		wantRetry bool
	}{
		{status: http.StatusBadRequest},
		{status: http.StatusUnauthorized},
		{status: http.StatusNotFound},
		{status: http.StatusTooManyRequests, wantRetry: true},
		{status: http.StatusInternalServerError, wantRetry: true},
		{status: http.StatusServiceUnavailable, wantRetry: true},
		{url: refused, wantRetry: true},
	} {
		t.Run(http.StatusText(tc.status)+tc.url, func(t *testing.T) {
			rv := &receiver{status: tc.status, echo: true}
			srv := httptest.NewServer(rv)
			defer srv.Close()
			u := tc.url
			if u == "" {
				u = srv.URL + "/secret-path-token"
			}
			n, _ := New(Options{URL: u, HTTPClient: basicAuth()})
			retry, err := n.Notify(context.Background(), fired)
			if err == nil {
				t.Fatal("Notify succeeded")
			}
			if retry != tc.wantRetry {
				t.Errorf("retry = %v, want %v (err %v)", retry, tc.wantRetry, err)
			}
			for _, leak := range []string{canaryPassword, "dG9rZW53YXRjaDpDQU5BUllhbVBBU1NXT1JEMWEyYg", "secret-path-token"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error leaks %q: %v", leak, err)
				}
			}
		})
	}
}

// An error page that echoes the request path (a proxy's "Cannot POST
// /...") must not put a token of the base URL's path or query in the error.
func TestErrorHidesURLPathAndQuery(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Cannot POST "+r.URL.RequestURI(), http.StatusNotFound)
	}))
	defer srv.Close()
	n, err := New(Options{URL: srv.URL + "/am/PaThToKeN?key=QuErYtOkEn"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.Notify(context.Background(), fired)
	if err == nil {
		t.Fatal("a 404 was accepted")
	}
	if strings.Contains(err.Error(), "PaThToKeN") || strings.Contains(err.Error(), "QuErYtOkEn") {
		t.Errorf("error leaks the URL path or query: %v", err)
	}
}

// Through the Router: a 5xx is retried until Alertmanager accepts, and a
// refusal is not.
func TestRouterRetriesAlertmanager(t *testing.T) {
	var mu sync.Mutex
	answers := []int{503, 500, 200}
	var seen int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		status := 200
		if seen < len(answers) {
			status = answers[seen]
		}
		seen++
		w.WriteHeader(status)
	}))
	defer srv.Close()
	n, _ := New(Options{URL: srv.URL})
	r := notify.NewRouter(notify.RouterOptions{MinBackoff: time.Millisecond})
	defer r.Stop(context.Background())
	r.Update([]notify.Destination{{Name: notify.DestinationName("alertmanager", srv.URL), Notifier: n, Resends: true}})
	accepted := make(chan string, 1)
	r.Send(alerting.Message{Alert: fired, Accepted: func(d string) { accepted <- d }})
	select {
	case d := <-accepted:
		if !strings.HasPrefix(d, "alertmanager/127.0.0.1:") {
			t.Errorf("destination = %q", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered after two 5xx answers")
	}
	mu.Lock()
	defer mu.Unlock()
	if seen != 3 {
		t.Errorf("attempts = %d, want 3", seen)
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:9093", "ftp://am.example.com", "::"} {
		if _, err := New(Options{URL: u, HTTPClient: basicAuth()}); err == nil {
			t.Errorf("New(%q) succeeded", u)
		} else if strings.Contains(err.Error(), canaryPassword) {
			t.Errorf("error leaks the password")
		}
	}
}

func TestEndpointKeepsQueryOutOfThePath(t *testing.T) {
	var path, query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, query = r.URL.Path, r.URL.RawQuery
	}))
	defer srv.Close()
	n, err := New(Options{URL: srv.URL + "/am/?tenant=ops"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), alerting.Alert{Labels: map[string]string{"alertname": "A"}}); err != nil {
		t.Fatal(err)
	}
	if path != "/am/api/v2/alerts" || query != "tenant=ops" {
		t.Fatalf("posted to path %q query %q, want /am/api/v2/alerts with tenant=ops", path, query)
	}
}

// basicAuth is the canary basic auth of the tests.
func basicAuth() promconfig.HTTPClientConfig {
	return promconfig.HTTPClientConfig{BasicAuth: &promconfig.BasicAuth{Username: "tokenwatch", Password: canaryPassword}}
}
