package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokenwatch/tokenwatch/checks"
)

// testProbeTimeout is the /probe deadline without a scrape timeout header.
const testProbeTimeout = 7 * time.Second

// fakeProber answers from a fixed table and records the deadline it got.
type fakeProber struct {
	results  map[string]*checks.Result
	err      error
	deadline time.Duration
	opts     ProbeOptions
}

func (f *fakeProber) ProbeOrg(ctx context.Context, name string, opts ProbeOptions) (checks.Info, *checks.Result, error) {
	f.opts = opts
	if d, ok := ctx.Deadline(); ok {
		f.deadline = time.Until(d)
	}
	if f.err != nil {
		return checks.Info{}, nil, f.err
	}
	r, ok := f.results[name]
	if !ok {
		return checks.Info{}, nil, fmt.Errorf("probe %s: %w", name, ErrUnknownOrg)
	}
	info := acmeInfo()
	if name == "beta" {
		info = betaInfo()
	}
	return info, r, nil
}

func newFakeProber() *fakeProber {
	return &fakeProber{results: map[string]*checks.Result{"acme-prod": acmeFirst(), "beta": betaNotPermitted()}}
}

func probe(t *testing.T, p Prober, query string, header http.Header) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(ProbeHandler(p, func() time.Duration { return testProbeTimeout }, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/probe"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// sample returns the value of the series with exactly these labels.
func sample(t *testing.T, exposition, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatalf("the answer is not the text exposition format: %v\n%s", err, exposition)
	}
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		for _, lp := range m.Label {
			if labels[lp.GetName()] != lp.GetValue() {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestProbeHandlerAnswersTheCheckItRan(t *testing.T) {
	tests := []struct {
		org         string
		wantSuccess float64
		want        map[string]float64 // series with only the org label
		wantAbsent  []string
		outcome     string
	}{
		{org: "acme-prod", wantSuccess: 1, outcome: "ok", want: map[string]float64{
			"tokenwatch_check_success":                            1,
			"tokenwatch_introspection_active":                     1,
			"tokenwatch_token_expiry_timestamp_seconds":           1767330000,
			"tokenwatch_tls_certificate_expiry_timestamp_seconds": 1775098800,
		}},
		{org: "beta", wantSuccess: 0, outcome: "introspection_not_permitted", want: map[string]float64{
			"tokenwatch_check_success":        0,
			"tokenwatch_introspection_active": 0,
		}, wantAbsent: []string{"tokenwatch_token_expiry_timestamp_seconds"}},
	}
	for _, tt := range tests {
		t.Run(tt.org, func(t *testing.T) {
			resp, body := probe(t, newFakeProber(), "?org="+url.QueryEscape(tt.org), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want the text exposition format", ct)
			}
			if v, ok := sample(t, body, "tokenwatch_probe_success", map[string]string{}); !ok || v != tt.wantSuccess {
				t.Errorf("tokenwatch_probe_success = %v (present %v), want %v", v, ok, tt.wantSuccess)
			}
			org := map[string]string{"org": tt.org}
			for name, want := range tt.want {
				if v, ok := sample(t, body, name, org); !ok || v != want {
					t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
				}
			}
			for _, name := range tt.wantAbsent {
				if _, ok := sample(t, body, name, org); ok {
					t.Errorf("%s present, want absent", name)
				}
			}
			if v, ok := sample(t, body, "tokenwatch_checks_total", map[string]string{"org": tt.org, "outcome": tt.outcome}); !ok || v != 1 {
				t.Errorf("checks_total{outcome=%q} = %v (present %v), want 1", tt.outcome, v, ok)
			}
			// As on /metrics: the last check's step durations always, the
			// histograms and phases by the org's settings (acme has them).
			if _, ok := sample(t, body, "tokenwatch_step_last_duration_seconds", map[string]string{"org": tt.org, "step": "token"}); !ok {
				t.Errorf("tokenwatch_step_last_duration_seconds{step=token} absent")
			}
			v, ok := sample(t, body, "tokenwatch_step_duration_seconds", map[string]string{"org": tt.org, "step": "token"})
			if opted := tt.org == "acme-prod"; ok != opted || (opted && v != 1) {
				t.Errorf("token step histogram count = %v (present %v), want present %v with 1", v, ok, opted)
			}
			if _, ok := sample(t, body, "tokenwatch_step_phase_duration_seconds", map[string]string{"org": tt.org, "step": "token", "phase": "processing"}); ok != (tt.org == "acme-prod") {
				t.Errorf("phases present %v, want %v", ok, tt.org == "acme-prod")
			}
			if strings.Contains(body, "tokenwatch_fleet_") {
				t.Errorf("the answer holds fleet-wide series:\n%s", body)
			}
			if strings.Contains(body, `org="`+otherOrg(tt.org)+`"`) {
				t.Errorf("the answer holds series of another org:\n%s", body)
			}
		})
	}
}

func otherOrg(name string) string {
	if name == "beta" {
		return "acme-prod"
	}
	return "beta"
}

func TestProbeHandlerErrors(t *testing.T) {
	tests := []struct {
		name       string
		prober     *fakeProber
		query      string
		wantStatus int
		wantBody   []string
		notInBody  []string
	}{
		{name: "missing org", prober: newFakeProber(), query: "", wantStatus: http.StatusBadRequest,
			wantBody: []string{"org parameter is missing", "/probe?org=NAME"}},
		{name: "empty org", prober: newFakeProber(), query: "?org=", wantStatus: http.StatusBadRequest,
			wantBody: []string{"org parameter is missing"}},
		{name: "unknown org is named", prober: newFakeProber(), query: "?org=nope", wantStatus: http.StatusNotFound,
			wantBody: []string{`unknown org "nope"`}},
		{name: "unknown org name is escaped", prober: newFakeProber(),
			query: "?org=" + url.QueryEscape("<script>alert(1)</script>\nX-Injected: 1"), wantStatus: http.StatusNotFound,
			wantBody: []string{"&lt;script&gt;"}, notInBody: []string{"<script>", "\nX-Injected"}},
		{name: "other errors are 500", prober: &fakeProber{err: errors.New("agent is shutting down")}, query: "?org=acme-prod",
			wantStatus: http.StatusInternalServerError, wantBody: []string{`probe of org "acme-prod" failed`, "shutting down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := probe(t, tt.prober, tt.query, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			for _, s := range tt.wantBody {
				if !strings.Contains(body, s) {
					t.Errorf("body %q lacks %q", body, s)
				}
			}
			for _, s := range tt.notInBody {
				if strings.Contains(body, s) {
					t.Errorf("body %q holds %q", body, s)
				}
			}
		})
	}
}

func TestProbeHandlerHonoursScrapeTimeout(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		wantMin time.Duration
		wantMax time.Duration
	}{
		{name: "no header: the configured probe timeout", wantMin: testProbeTimeout - time.Second, wantMax: testProbeTimeout},
		{name: "a margin is kept for the answer", header: "10", wantMin: 9 * time.Second, wantMax: 9500 * time.Millisecond},
		{name: "short timeouts are used whole", header: "0.5", wantMin: 400 * time.Millisecond, wantMax: 500 * time.Millisecond},
		{name: "garbage is ignored", header: "soon", wantMin: testProbeTimeout - time.Second, wantMax: testProbeTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakeProber()
			h := http.Header{}
			if tt.header != "" {
				h.Set("X-Prometheus-Scrape-Timeout-Seconds", tt.header)
			}
			if resp, body := probe(t, p, "?org=acme-prod", h); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if p.deadline < tt.wantMin || p.deadline > tt.wantMax {
				t.Errorf("deadline in %v, want between %v and %v", p.deadline, tt.wantMin, tt.wantMax)
			}
		})
	}
}

func TestProbeOptionsFromTheQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  ProbeOptions
		code  int
	}{
		{"?org=acme-prod", ProbeOptions{MaxAge: -1}, http.StatusOK},
		{"?org=acme-prod&max_age=0s", ProbeOptions{MaxAge: 0}, http.StatusOK},
		{"?org=acme-prod&max_age=45s&force=1", ProbeOptions{MaxAge: 45 * time.Second, Force: true}, http.StatusOK},
		{"?org=acme-prod&max_age=soon", ProbeOptions{}, http.StatusBadRequest},
		{"?org=acme-prod&max_age=-1s", ProbeOptions{}, http.StatusBadRequest},
		{"?org=acme-prod&force=yes", ProbeOptions{}, http.StatusBadRequest},
	} {
		p := newFakeProber()
		resp, body := probe(t, p, tc.query, nil)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d (%s), want %d", tc.query, resp.StatusCode, body, tc.code)
			continue
		}
		if tc.code == http.StatusOK && p.opts != tc.want {
			t.Errorf("%s: options %+v, want %+v", tc.query, p.opts, tc.want)
		}
	}
}

// stuckProber answers a fixed result with a fixed error, as the agent does
// when it may not log in or when the check outran the deadline.
type stuckProber struct {
	res *checks.Result
	err error
}

func (s stuckProber) ProbeOrg(context.Context, string, ProbeOptions) (checks.Info, *checks.Result, error) {
	return acmeInfo(), s.res, s.err
}

func TestProbeWithoutANewCheck(t *testing.T) {
	t.Run("no login allowed and no earlier result: 503", func(t *testing.T) {
		resp, body := probe(t, stuckProber{err: fmt.Errorf("%w: backing off", ErrNoLogin)}, "?org=acme-prod", nil)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "no earlier result") {
			t.Fatalf("status %d, Retry-After %q, body %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	})
	t.Run("no login allowed: the earlier result, with its age", func(t *testing.T) {
		earlier := acmeFirst()
		resp, body := probe(t, stuckProber{res: earlier, err: fmt.Errorf("%w: backing off", ErrNoLogin)}, "?org=acme-prod", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "tokenwatch_probe_success 1") {
			t.Fatalf("status %d body %s; want 200 answering the earlier, healthy result", resp.StatusCode, body)
		}
		age := regexp.MustCompile(`(?m)^tokenwatch_probe_result_age_seconds (\S+)$`).FindStringSubmatch(body)
		if age == nil {
			t.Fatalf("no tokenwatch_probe_result_age_seconds in\n%s", body)
		}
		want := time.Since(earlier.Start.Add(earlier.Duration)).Seconds()
		if got, _ := strconv.ParseFloat(age[1], 64); got < want-5 || got > want+5 {
			t.Errorf("result age %s, want about %.0f", age[1], want)
		}
	})
	t.Run("check still running: probe_success 0 whatever the earlier result", func(t *testing.T) {
		resp, body := probe(t, stuckProber{res: acmeFirst(), err: fmt.Errorf("%w: deadline", ErrStillRunning)}, "?org=acme-prod", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "tokenwatch_probe_success 0") {
			t.Fatalf("status %d body %s; want 200 with probe_success 0", resp.StatusCode, body)
		}
	})
}
