package checks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// BenchmarkCheck measures one whole check (token, introspect, probe, revoke)
// against the simulated org on loopback: the client's cost per check, with
// the org's keep-alive connection and, for comparison, a new connection for
// every request. Compare the two as a ratio from one run.
func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name      string
		keepAlive bool
		kind      string
	}{
		{"client_credentials/keep-alive", true, "client_credentials"},
		{"client_credentials/new-connections", false, "client_credentials"},
		{"password-seed-case/keep-alive", true, "password"},
		{"jwt_bearer/keep-alive", true, "jwt_bearer"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := newWorld(b, orgsim.Options{})
			var opts []checks.Option
			if !bc.keepAlive {
				c := checks.NewHTTPClient(nil)
				c.Transport.(*http.Transport).DisableKeepAlives = true
				opts = append(opts, checks.WithHTTPClient(c))
			}
			c := checks.NewChecker(w.target(bc.kind), opts...)
			want := checks.OutcomeOK
			if bc.kind == "password" {
				want = checks.OutcomeIntrospectionNotPermitted
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if res := c.Check(context.Background()); res.Outcome != want {
					b.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
				}
			}
		})
	}
}

// BenchmarkCheckOverhead runs whole checks over a transport that replays
// answers the simulated org gave (no sockets, no server): what is left is
// the check's own work on top of net/http's client (building requests,
// timing them, reading and interpreting answers, the verdict, redaction).
// bench/percheck measures the whole client against a minimal one.
func BenchmarkCheckOverhead(b *testing.B) {
	w := newWorld(b, orgsim.Options{})
	tg := w.target("client_credentials")
	rec := &recorder{next: http.DefaultTransport, answers: map[string]recorded{}}
	if res := checks.NewChecker(tg, checks.WithTransport(rec), checks.WithClock(w.clock.Now)).Check(context.Background()); res.Outcome != checks.OutcomeOK {
		b.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	b.Run("check", func(b *testing.B) {
		c := checks.NewChecker(tg, checks.WithTransport(replay(rec.answers)), checks.WithClock(w.clock.Now))
		b.ReportAllocs()
		for b.Loop() {
			if res := c.Check(context.Background()); res.Outcome != checks.OutcomeOK {
				b.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
			}
		}
	})
	// The same four requests by a minimal client over the same replay, for scale.
	b.Run("minimal", func(b *testing.B) {
		hc := &http.Client{Transport: replay(rec.answers)}
		base := w.org.URL() + "/services/oauth2/"
		auth := "client_id=cc-app&client_secret=" + url.QueryEscape(ccSecret)
		do := func(method, u, form, bearer string) []byte {
			var body io.Reader
			if form != "" {
				body = strings.NewReader(form)
			}
			req, err := http.NewRequest(method, u, body)
			if err != nil {
				b.Fatal(err)
			}
			if form != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("%s: %d %v", u, resp.StatusCode, err)
			}
			return data
		}
		b.ReportAllocs()
		for b.Loop() {
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.Unmarshal(do(http.MethodPost, base+"token", "grant_type=client_credentials&"+auth, ""), &tok); err != nil {
				b.Fatal(err)
			}
			q := url.QueryEscape(tok.AccessToken)
			do(http.MethodPost, base+"introspect", "token="+q+"&token_type_hint=access_token&"+auth, "")
			do(http.MethodGet, base+"userinfo", "", tok.AccessToken)
			do(http.MethodPost, base+"revoke", "token="+q+"&token_type_hint=access_token&"+auth, "")
		}
	})
}

type recorded struct {
	status int
	header http.Header
	body   []byte
}

// recorder keeps the last answer for each path.
type recorder struct {
	next    http.RoundTripper
	answers map[string]recorded
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.answers[req.URL.Path] = recorded{resp.StatusCode, resp.Header, body}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// replay answers each path as recorded; the header is shared, read only.
type replay map[string]recorded

func (r replay) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	a, ok := r[req.URL.Path]
	if !ok {
		return nil, fmt.Errorf("no answer recorded for %s", req.URL.Path)
	}
	return &http.Response{StatusCode: a.status, Header: a.header, Body: io.NopCloser(bytes.NewReader(a.body)),
		ContentLength: int64(len(a.body)), Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

// BenchmarkIdleOrgMemory reports the heap an org's checker keeps between
// checks (B/idle-org): what the daemon holds per org for the minute between
// two checks, its connections aside (they are shared and closed when idle).
// 500 checkers share one HTTP client; each runs one check; the heap is
// read after a collection before and after.
func BenchmarkIdleOrgMemory(b *testing.B) {
	w := newWorld(b, orgsim.Options{})
	hc := checks.NewHTTPClient(nil)
	const orgs = 500
	var retained float64
	for b.Loop() {
		cs := make([]*checks.Checker, orgs)
		rs := make([]*checks.Result, orgs)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		for i := range cs {
			cs[i] = checks.NewChecker(w.target("client_credentials"), checks.WithHTTPClient(hc))
			rs[i] = cs[i].Check(context.Background())
		}
		hc.CloseIdleConnections()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		retained += float64(int64(ms.HeapAlloc)-int64(before)) / orgs
		runtime.KeepAlive(cs)
		runtime.KeepAlive(rs)
	}
	b.ReportMetric(retained/float64(b.N), "B/idle-org")
}
