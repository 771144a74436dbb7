package orgsim_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

func TestFaults(t *testing.T) {
	const discovery = "/.well-known/openid-configuration"
	tests := []struct {
		name     string
		endpoint orgsim.Endpoint
		fault    orgsim.Fault
		check    func(t *testing.T, e *env)
	}{
		{name: "latency", endpoint: orgsim.EndpointDiscovery, fault: orgsim.Fault{Latency: 150 * time.Millisecond},
			check: func(t *testing.T, e *env) {
				start := time.Now()
				if r := e.get(discovery, ""); r.status != http.StatusOK {
					t.Fatalf("got %s", r.describe())
				}
				if d := time.Since(start); d < 150*time.Millisecond {
					t.Errorf("answered after %v, want at least 150ms", d)
				}
			}},
		{name: "latency ends with the request", endpoint: orgsim.EndpointDiscovery, fault: orgsim.Fault{Latency: time.Minute},
			check: func(t *testing.T, e *env) {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.org.URL()+discovery, nil)
				if _, err := e.client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("got %v, want the client's deadline", err)
				}
				// The org's Close (in cleanup) must not wait out the minute either.
			}},
		{name: "status", endpoint: orgsim.EndpointToken, fault: orgsim.Fault{Status: 503, Body: `{"error":"unavailable"}`},
			check: func(t *testing.T, e *env) {
				r := e.post("/services/oauth2/token", passwordForm(webID, webSecret))
				if r.status != 503 || string(r.body) != `{"error":"unavailable"}` || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
					t.Errorf("got %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
				}
			}},
		{name: "status with content type", endpoint: orgsim.EndpointIntrospect, fault: orgsim.Fault{Status: 500, Body: "oops", ContentType: "text/xml"},
			check: func(t *testing.T, e *env) {
				r := e.introspect(allID, allSecret, "x")
				if r.status != 500 || r.header.Get("Content-Type") != "text/xml" {
					t.Errorf("got %d %q", r.status, r.header.Get("Content-Type"))
				}
			}},
		{name: "HTML maintenance page", endpoint: orgsim.EndpointToken, fault: orgsim.Fault{HTML: true},
			check: func(t *testing.T, e *env) {
				r := e.post("/services/oauth2/token", passwordForm(webID, webSecret))
				if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
					!strings.Contains(string(r.body), "We are down for maintenance") {
					t.Errorf("got %d %q", r.status, r.header.Get("Content-Type"))
				}
			}},
		{name: "truncate", endpoint: orgsim.EndpointToken, fault: orgsim.Fault{Truncate: true},
			check: func(t *testing.T, e *env) {
				r := e.post("/services/oauth2/token", passwordForm(webID, webSecret))
				if r.status != 200 || json.Valid(r.body) || !strings.HasPrefix(string(r.body), `{"access_token":"`) {
					t.Errorf("got %d, valid JSON %v: want the first half of a token answer", r.status, json.Valid(r.body))
				}
			}},
		{name: "hangup", endpoint: orgsim.EndpointToken, fault: orgsim.Fault{Hangup: true},
			check: func(t *testing.T, e *env) {
				resp, err := e.client.PostForm(e.org.URL()+"/services/oauth2/token", passwordForm(webID, webSecret))
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got HTTP %d, want the connection closed without an answer", resp.StatusCode)
				}
			}},
		{name: "redirect", endpoint: orgsim.EndpointToken, fault: orgsim.Fault{Redirect: "https://login.example.com/services/oauth2/token"},
			check: func(t *testing.T, e *env) {
				r := e.post("/services/oauth2/token", passwordForm(webID, webSecret))
				if r.status != http.StatusTemporaryRedirect || r.header.Get("Location") != "https://login.example.com/services/oauth2/token" {
					t.Errorf("got %d Location %q", r.status, r.header.Get("Location"))
				}
			}},
		{name: "bad signature", endpoint: orgsim.EndpointToken, fault: orgsim.Fault{BadSignature: true},
			check: func(t *testing.T, e *env) {
				tr := e.token(passwordForm(webID, webSecret))
				if tr.Signature == "" || verifySignature(webSecret, tr.ID, tr.IssuedAt, tr.Signature) {
					t.Error("want a present signature that does not verify")
				}
			}},
		{name: "date skew", endpoint: orgsim.EndpointToken, fault: orgsim.Fault{DateSkew: -5 * time.Minute},
			check: func(t *testing.T, e *env) {
				r := e.post("/services/oauth2/token", passwordForm(webID, webSecret))
				got, err := http.ParseTime(r.header.Get("Date"))
				if err != nil || !got.Equal(epoch.Add(-5*time.Minute)) {
					t.Errorf("Date = %q, want the org clock minus 5m", r.header.Get("Date"))
				}
				if r.status != 200 {
					t.Errorf("skew must not change the answer: %s", r.describe())
				}
			}},
		{name: "remaining", endpoint: orgsim.EndpointDiscovery, fault: orgsim.Fault{Status: 502, Remaining: 2},
			check: func(t *testing.T, e *env) {
				var got []int
				for range 3 {
					got = append(got, e.get(discovery, "").status)
				}
				if got[0] != 502 || got[1] != 502 || got[2] != 200 {
					t.Errorf("statuses %v, want [502 502 200]", got)
				}
				if n := e.org.Requests(orgsim.EndpointDiscovery); n != 3 {
					t.Errorf("Requests(discovery) = %d, want 3", n)
				}
			}},
		{name: "all endpoints", endpoint: orgsim.EndpointAll, fault: orgsim.Fault{Status: 503},
			check: func(t *testing.T, e *env) {
				e.org.SetFault(orgsim.EndpointUserinfo, orgsim.Fault{Status: 418})
				if s := e.get(discovery, "").status; s != 503 {
					t.Errorf("discovery: %d, want 503", s)
				}
				if s := e.get("/services/oauth2/userinfo", "").status; s != 418 {
					t.Errorf("userinfo: %d, want its own fault 418 over the org-wide one", s)
				}
				e.org.ClearFaults()
				if s := e.get(discovery, "").status; s != 200 {
					t.Errorf("after ClearFaults: %d, want 200", s)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orgsim.Options{})
			e.org.SetFault(tt.endpoint, tt.fault)
			tt.check(t, e)
		})
	}
}

// A held request waits at the server, counted by Requests, until its Hold is
// closed; Close ends a hold still going on instead of waiting for it.
func TestHold(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	post := func(done chan<- int) {
		resp, err := e.client.PostForm(e.org.URL()+"/services/oauth2/token", passwordForm(webID, webSecret))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}
	hold := make(chan struct{})
	e.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold, Remaining: 1})
	answered := make(chan int, 1)
	go post(answered)
	e2etest.WaitFor(t, 10*time.Second, "the held request to arrive", func() bool { return e.org.Requests(orgsim.EndpointToken) == 1 })
	select {
	case status := <-answered:
		t.Fatalf("answered %d while held", status)
	default:
	}
	close(hold)
	if status := <-answered; status != http.StatusOK {
		t.Fatalf("after the release: status %d, want 200", status)
	}

	e.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: make(chan struct{})})
	go post(answered)
	e2etest.WaitFor(t, 10*time.Second, "the second held request to arrive", func() bool { return e.org.Requests(orgsim.EndpointToken) == 2 })
	e.org.Close()
	<-answered
}

func TestRequestsCountsPerEndpoint(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	tok := e.ccToken()
	e.introspect(ccID, ccSecret, tok)
	e.introspect(ccID, ccSecret, tok)
	e.get("/services/oauth2/userinfo", tok)
	want := map[orgsim.Endpoint]int{
		orgsim.EndpointToken: 1, orgsim.EndpointIntrospect: 2, orgsim.EndpointUserinfo: 1,
		orgsim.EndpointRevoke: 0, orgsim.EndpointAll: 4,
	}
	for ep, n := range want {
		if got := e.org.Requests(ep); got != n {
			t.Errorf("Requests(%s) = %d, want %d", ep, got, n)
		}
	}
}

func TestStartTLS(t *testing.T) {
	org := orgsim.New(orgsim.Options{})
	org.AddUser(orgsim.User{Username: username, Password: password, SecurityToken: securityToken})
	org.AddApp(orgsim.App{ClientID: webID, ClientSecret: webSecret})
	if err := org.StartTLS(); err != nil {
		t.Fatal(err)
	}
	defer org.Close()
	if !strings.HasPrefix(org.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %q", org.URL())
	}
	if err := org.Start(); err == nil {
		t.Error("starting twice: want an error")
	}

	pool := x509.NewCertPool()
	pool.AddCert(org.Certificate())
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := trusting.PostForm(org.URL()+"/services/oauth2/token", passwordForm(webID, webSecret))
	if err != nil {
		t.Fatalf("client trusting Certificate(): %v", err)
	}
	var tr tokenResponse
	err = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || tr.InstanceURL != org.URL() {
		t.Errorf("token over TLS: status %d, instance_url %q", resp.StatusCode, tr.InstanceURL)
	}

	_, err = (&http.Client{}).Get(org.URL() + "/.well-known/openid-configuration")
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Errorf("client not trusting the certificate: got %v, want a verification error", err)
	}
}

func TestCloseBeforeStart(t *testing.T) {
	org := orgsim.New(orgsim.Options{})
	org.Close()
	if err := org.Start(); err == nil {
		t.Error("start after Close: want an error")
	}
	if org.URL() != "" || org.Certificate() != nil {
		t.Error("a closed, never started org has a URL or certificate")
	}
}
