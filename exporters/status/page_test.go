package status

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// now is the fake clock's time: 2026-01-02T12:00:00Z.
func now() time.Time { return time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC) }

func active(b bool) *bool { return &b }

func infos() []checks.Info {
	return []checks.Info{
		{Name: "zeta-ok", Provider: checks.ProviderSalesforce, Grant: checks.GrantPassword, Labels: map[string]string{"team": "crm"}},
		{Name: "alpha-ok", Provider: checks.ProviderGeneric, Grant: checks.GrantClientCredentials},
		{Name: "mid-gap", Provider: checks.ProviderSalesforce, Grant: checks.GrantJWTBearer, Labels: map[string]string{"env": "prod"}},
		{Name: "new-org", Provider: checks.ProviderGeneric, Grant: checks.GrantRefreshToken},
		{Name: "x-dead", Provider: checks.ProviderSalesforce, Grant: checks.GrantPassword},
	}
}

func healthy(org string) *checks.Result {
	return &checks.Result{
		Org: org, Start: now().Add(-13 * time.Second), Duration: time.Second, Outcome: checks.OutcomeOK,
		Explanation: "all good",
		Steps: []checks.StepResult{
			{Step: checks.StepToken, Duration: 125 * time.Millisecond, Status: 200, Outcome: checks.OutcomeOK},
			{Step: checks.StepIntrospect, Duration: 2500 * time.Microsecond, Status: 200, Outcome: checks.OutcomeOK},
			{Step: checks.StepProbe, Duration: 40 * time.Millisecond, Status: 200, Outcome: checks.OutcomeOK},
			{Step: checks.StepRevoke, Skipped: true},
		},
		Token: checks.TokenFacts{Minted: true, Active: active(true), Signature: checks.SignatureValid,
			IssuedAt: now().Add(-time.Minute), Expiry: now().Add(time.Hour + 59*time.Minute + 30*time.Second)},
	}
}

const gapFix = "Give the introspecting connected app the permission to introspect all tokens, or introspect with the app that minted the token."

func notPermitted() *checks.Result {
	return &checks.Result{
		Org: "mid-gap", Start: now().Add(-3 * time.Minute), Duration: 2 * time.Second,
		Outcome:     checks.OutcomeIntrospectionNotPermitted,
		Explanation: `introspection answered {"active":false} <script>alert("x")</script> but userinfo accepted the same token`,
		Fix:         gapFix,
		Steps: []checks.StepResult{
			{Step: checks.StepToken, Duration: 300 * time.Millisecond, Status: 200, Outcome: checks.OutcomeOK},
			{Step: checks.StepIntrospect, Duration: 80 * time.Millisecond, Status: 200, Outcome: checks.OutcomeIntrospectionNotPermitted},
		},
		Token: checks.TokenFacts{Minted: true, Active: active(false), Signature: checks.SignatureNotChecked},
	}
}

func dead() *checks.Result {
	return &checks.Result{
		Org: "x-dead", Start: now().Add(-time.Hour), Duration: time.Second, Outcome: checks.OutcomeTokenInactive,
		Explanation: "introspection said inactive and userinfo answered 401",
		Fix:         "Check the session timeout of the connected app.",
		Token:       checks.TokenFacts{Active: active(false), Expiry: now().Add(-5 * time.Minute)},
	}
}

// fakeSource stands in for the agent, the one owner of the orgs and their
// last results: the Page reads them from it at every request.
type fakeSource struct {
	mu   sync.Mutex
	orgs []checks.OrgState
}

func newSource(infos ...checks.Info) *fakeSource {
	s := &fakeSource{}
	s.set(infos...)
	return s
}

func (s *fakeSource) Orgs() []checks.OrgState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.orgs)
}

// set makes infos the configured orgs, as a reload of the agent does: orgs
// that stay keep their last result, the others are forgotten.
func (s *fakeSource) set(infos ...checks.Info) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make([]checks.OrgState, 0, len(infos))
	for _, info := range infos {
		o := checks.OrgState{Info: info}
		for _, old := range s.orgs {
			if old.Info.Name == info.Name {
				o.Last = old.Last
			}
		}
		next = append(next, o)
	}
	s.orgs = next
}

// publish makes r the org's last result, as the agent does; the agent drops
// the result of an org no longer configured.
func (s *fakeSource) publish(org string, r *checks.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.orgs {
		if s.orgs[i].Info.Name == org {
			s.orgs[i].Last = r
		}
	}
}

func testSource() *fakeSource {
	src := newSource(infos()...)
	for _, info := range infos() {
		switch info.Name {
		case "zeta-ok", "alpha-ok":
			src.publish(info.Name, healthy(info.Name))
		case "mid-gap":
			src.publish(info.Name, notPermitted())
		case "x-dead":
			src.publish(info.Name, dead())
		}
	}
	return src
}

func newTestPage() *Page {
	return NewPage(PageOptions{Title: "Acme tokens", Version: "v1.2.3", Clock: now, Source: testSource()})
}

func get(t *testing.T, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHTMLShowsOrgsWorstFirst(t *testing.T) {
	// Each org row: its name, then its state cell's class and word.
	rowRE := regexp.MustCompile(`<tr class="org \w+" id="org-([\w-]+)">[\s\S]*?<td class="state (\w+)"><span class="badge">(\w+)</span></td>`)
	resp, body := get(t, newTestPage().HTML(), http.MethodGet, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var order, words []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		order = append(order, m[1])
		if m[2] != strings.ToLower(m[3]) {
			t.Errorf("%s: state colour %q does not match the word %q", m[1], m[2], m[3])
		}
		words = append(words, m[3])
	}
	// Not checked yet is not known to be healthy: between failing and OK.
	wantOrder := []string{"mid-gap", "x-dead", "new-org", "alpha-ok", "zeta-ok"}
	wantWords := []string{"FAILING", "FAILING", "PENDING", "OK", "OK"}
	if !reflect.DeepEqual(order, wantOrder) {
		t.Errorf("rows in order %v, want %v", order, wantOrder)
	}
	if !reflect.DeepEqual(words, wantWords) {
		t.Errorf("states %v, want %v", words, wantWords)
	}
}

func TestHTMLContent(t *testing.T) {
	_, body := get(t, newTestPage().HTML(), http.MethodGet, "/")
	tests := []struct {
		name string
		want string
	}{
		{"title and version", `<h1>Acme tokens <small>v1.2.3</small></h1>`},
		{"refreshes itself", `<meta http-equiv="refresh" content="15">`},
		{"summary first, worst first, in red", `<p class="summary failing"><strong>2 failing, 1 not checked yet, 2 ok</strong></p>`},
		{"the permission gap is named", `<code class="outcome" title="introspection said inactive, but the resource call with the same token succeeded: the introspecting client may not see this token">introspection_not_permitted</code>`},
		{"its fix is shown", `<p class="fix"><strong>Fix:</strong> ` + gapFix},
		{"a dead token's fix is shown", `<p class="fix"><strong>Fix:</strong> Check the session timeout of the connected app.`},
		{"the command that explains more", `Step by step: <code>tokenwatch diagnose --org mid-gap</code>`},
		{"fits a phone", `<meta name="viewport" content="width=device-width, initial-scale=1">`},
		{"rows become cards on a phone", `@media (max-width: 720px)`},
		{"cards name each value", `<td data-label="Token expires" title="2026-01-02T13:59:30Z">in 1h59m</td>`},
		{"expiry counts down", `>in 1h59m</td>`},
		{"a pending org has no steps yet", `<span class="muted">none yet</span>`},
		{"a past expiry says so", `>expired 5m0s ago</td>`},
		{"an unknown expiry says so", `>unknown</td>`},
		{"last check is relative", `>12s ago</td>`},
		{"last check has the exact time on hover", `title="2026-01-02T11:59:48Z">12s ago`},
		{"a never-checked org says so", `>never</td>`},
		{"step latencies in ms", `<li>token 125 ms</li><li>introspect 2.5 ms</li><li>probe 40 ms</li><li>revoke skipped</li>`},
		{"labels", `team=crm`},
		{"metrics link", `<a href="metrics">`},
		{"API link", `<a href="api/v1/orgs">`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(body, tt.want) {
				t.Errorf("page lacks %q\n%s", tt.want, body)
			}
		})
	}

	t.Run("server-sent text is escaped", func(t *testing.T) {
		if strings.Contains(body, "<script") {
			t.Errorf("page holds a raw <script>:\n%s", body)
		}
		want := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`
		if !strings.Contains(body, want) {
			t.Errorf("page lacks the escaped explanation %q", want)
		}
	})
	t.Run("healthy orgs show no explanation", func(t *testing.T) {
		if strings.Contains(body, "all good") || strings.Contains(body, "--org alpha-ok") {
			t.Error("a healthy org's explanation is on the page")
		}
	})
}

func TestSummary(t *testing.T) {
	tests := []struct {
		failing, pending, ok int
		want, state          string
	}{
		{0, 0, 0, "No orgs are configured", "empty"},
		{0, 0, 1, "The org is ok", StateOK},
		{0, 0, 7, "All 7 orgs ok", StateOK},
		{1, 0, 5, "1 failing, 5 ok", StateFailing},
		{2, 1, 0, "2 failing, 1 not checked yet", StateFailing},
		{0, 3, 4, "3 not checked yet, 4 ok", StatePending},
		{0, 2, 0, "2 not checked yet", StatePending},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			text, state := summarize(tt.failing, tt.pending, tt.ok)
			if text != tt.want || state != tt.state {
				t.Errorf("summarize(%d, %d, %d) = %q, %q; want %q, %q", tt.failing, tt.pending, tt.ok, text, state, tt.want, tt.state)
			}
		})
	}
}

func TestHTMLWithoutOrgs(t *testing.T) {
	_, body := get(t, NewPage(PageOptions{}).HTML(), http.MethodGet, "/")
	for _, want := range []string{"<title>tokenwatch</title>", "No orgs are configured."} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestHTMLRouting(t *testing.T) {
	h := newTestPage().HTML()
	tests := []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/index.html", http.StatusNotFound},
		{http.MethodGet, "/favicon.ico", http.StatusNotFound},
		{http.MethodGet, "/api/v1/org", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			resp, _ := get(t, h, tt.method, tt.target)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestAPIRoundTrips(t *testing.T) {
	resp, body := get(t, newTestPage().API(), http.MethodGet, "/api/v1/orgs")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got OrgList
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}

	results := map[string]*checks.Result{"alpha-ok": healthy("alpha-ok"), "mid-gap": notPermitted(),
		"x-dead": dead(), "zeta-ok": healthy("zeta-ok")}
	states := map[string]string{"alpha-ok": StateOK, "mid-gap": StateFailing, "new-org": StatePending,
		"x-dead": StateFailing, "zeta-ok": StateOK}
	var want OrgList
	for _, name := range []string{"alpha-ok", "mid-gap", "new-org", "x-dead", "zeta-ok"} {
		for _, info := range infos() {
			if info.Name != name {
				continue
			}
			labels := info.Labels
			if labels == nil {
				labels = map[string]string{}
			}
			want.Orgs = append(want.Orgs, OrgState{Name: name, Provider: info.Provider, Grant: info.Grant,
				Labels: labels, State: states[name], Last: results[name]})
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("API answered\n%+v\nwant\n%+v", got, want)
	}

	t.Run("pending orgs have a null last check", func(t *testing.T) {
		if !strings.Contains(body, `"state":"pending","last":null`) {
			t.Errorf("body lacks a null last: %s", body)
		}
	})
	t.Run("the keys are the documented ones", func(t *testing.T) {
		var raw struct {
			Orgs []map[string]json.RawMessage `json:"orgs"`
		}
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range raw.Orgs[0] {
			keys = append(keys, k)
		}
		want := []string{"grant", "labels", "last", "name", "provider", "state"}
		slices.Sort(keys)
		if !reflect.DeepEqual(keys, want) {
			t.Errorf("keys %v, want %v", keys, want)
		}
	})
}

func TestAPIEmptyIsAnEmptyList(t *testing.T) {
	_, body := get(t, NewPage(PageOptions{}).API(), http.MethodGet, "/api/v1/orgs")
	if strings.TrimSpace(body) != `{"orgs":[]}` {
		t.Errorf("body %q, want an empty list", body)
	}
}

// The Page shows what its Source lists, at each request: the orgs a reload
// keeps with their results, none that it removed.
func TestPageFollowsTheSource(t *testing.T) {
	src := testSource()
	p := NewPage(PageOptions{Clock: now, Source: src})
	names := func() []string {
		var out []string
		_, body := get(t, p.API(), http.MethodGet, "/api/v1/orgs")
		var list OrgList
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Orgs {
			out = append(out, o.Name+":"+o.State)
		}
		return out
	}
	steps := []struct {
		name string
		act  func()
		want []string
	}{
		{"a removed org disappears, the others keep their results", func() {
			src.set(infos()[:3]...)
		}, []string{"alpha-ok:ok", "mid-gap:failing", "zeta-ok:ok"}},
		{"a late result of a removed org is ignored", func() {
			src.publish("x-dead", dead())
		}, []string{"alpha-ok:ok", "mid-gap:failing", "zeta-ok:ok"}},
		{"a new result replaces the last one", func() {
			src.publish("mid-gap", healthy("mid-gap"))
		}, []string{"alpha-ok:ok", "mid-gap:ok", "zeta-ok:ok"}},
		{"an org added again starts pending", func() {
			src.set(infos()...)
		}, []string{"alpha-ok:ok", "mid-gap:ok", "new-org:pending", "x-dead:pending", "zeta-ok:ok"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.act()
			if got := names(); !reflect.DeepEqual(got, s.want) {
				t.Errorf("orgs %v, want %v", got, s.want)
			}
		})
	}
	t.Run("the removed org is gone from the page too", func(t *testing.T) {
		src.set(infos()[:1]...)
		_, body := get(t, p.HTML(), http.MethodGet, "/")
		if strings.Contains(body, "mid-gap") {
			t.Error("the page still shows a removed org")
		}
	})
}

func TestShortDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{12*time.Second + 900*time.Millisecond, "12s"},
		{4*time.Minute + 5*time.Second, "4m5s"},
		{time.Hour + 59*time.Minute + 59*time.Second, "1h59m"},
		{3*24*time.Hour + 4*time.Hour + 30*time.Minute, "3d4h"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := shortDuration(tt.d); got != tt.want {
				t.Errorf("shortDuration(%v) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func TestMilliseconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{40 * time.Microsecond, "0.04 ms"},
		{950 * time.Microsecond, "0.95 ms"},
		{2500 * time.Microsecond, "2.5 ms"},
		{125 * time.Millisecond, "125 ms"},
		{3 * time.Second, "3000 ms"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := milliseconds(tt.d); got != tt.want {
				t.Errorf("milliseconds(%v) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func TestFiringAlertsShown(t *testing.T) {
	src := newSource(checks.Info{Name: "acme", Provider: "salesforce", Grant: "password"}, checks.Info{Name: "calm"})
	src.publish("acme", &checks.Result{Org: "acme", Outcome: checks.OutcomeIntrospectionNotPermitted, Start: time.Now()})
	p := NewPage(PageOptions{Source: src, Firing: func() map[string][]string {
		return map[string][]string{"acme": {"TokenIntrospectionInactive", "TokenAcquisitionFailed"}, "gone": {"X"}}
	}})

	rec := httptest.NewRecorder()
	p.API().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/orgs", nil))
	var list OrgList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, o := range list.Orgs {
		got[o.Name] = o.FiringAlerts
	}
	if want := []string{"TokenAcquisitionFailed", "TokenIntrospectionInactive"}; !slices.Equal(got["acme"], want) || got["calm"] != nil {
		t.Fatalf("firing alerts %v, want acme %v and none for calm", got, want)
	}
	rec = httptest.NewRecorder()
	p.HTML().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if !strings.Contains(rec.Body.String(), "alert firing: TokenIntrospectionInactive") {
		t.Fatal("the page does not show the firing alert")
	}
}

// A result read back from the store after a restart says so, and so does an
// org that backs off after a rejected login, with the time of its next login.
func TestLoadedAndBackingOffShown(t *testing.T) {
	src := newSource(checks.Info{Name: "restored"}, checks.Info{Name: "locked-out"})
	p := NewPage(PageOptions{Clock: now, Source: src})
	loaded := healthy("restored")
	loaded.Loaded = true
	src.publish("restored", loaded)
	rejected := &checks.Result{Org: "locked-out", Start: now().Add(-time.Minute), Duration: time.Second,
		Outcome: checks.OutcomeGrantRejected, NextAttempt: now().Add(4 * time.Minute)}
	src.publish("locked-out", rejected)
	_, body := get(t, p.HTML(), http.MethodGet, "/")
	for _, want := range []string{">12s ago (before the restart)</td>", "59s ago; backing off, next login 2026-01-02T12:04:00Z</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	_, api := get(t, p.API(), http.MethodGet, "/api/v1/orgs")
	if !strings.Contains(api, `"loaded":true`) || !strings.Contains(api, `"next_attempt":"2026-01-02T12:04:00Z"`) {
		t.Errorf("API lacks loaded or next_attempt:\n%s", api)
	}
}
