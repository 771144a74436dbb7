package metrics

import (
	"bytes"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

// t0 is 2026-01-02T03:00:00Z, 1767322800 in Unix seconds.
var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

// acmeInfo is an org with both opt-ins: its step histograms and phases.
func acmeInfo() checks.Info {
	return checks.Info{Name: "acme-prod", Provider: checks.ProviderSalesforce, Grant: checks.GrantPassword,
		Labels: map[string]string{"team": "crm", "env": "prod"}, StepHistograms: true, Phases: true}
}

// betaInfo is an org with the default metrics settings.

func betaInfo() checks.Info {
	return checks.Info{Name: "beta", Provider: checks.ProviderGeneric, Grant: checks.GrantClientCredentials,
		Labels: map[string]string{"region": "eu"}}
}

func active(b bool) *bool { return &b }

// step builds a step whose whole time is server processing unless phases say otherwise.
func step(s checks.Step, d time.Duration, phases ...checks.Phases) checks.StepResult {
	p := checks.Phases{Processing: d}
	if len(phases) > 0 {
		p = phases[0]
	}
	return checks.StepResult{Step: s, Duration: d, Phases: p, Outcome: checks.OutcomeOK}
}

func skipped(s checks.Step) checks.StepResult {
	return checks.StepResult{Step: s, Skipped: true, Duration: 3 * time.Second}
}

// The durations below are exact in binary so histogram sums compare exactly.

func acmeFirst() *checks.Result {
	return &checks.Result{
		Org: "acme-prod", Start: t0, Duration: 500 * time.Millisecond, Outcome: checks.OutcomeOK,
		Steps: []checks.StepResult{
			step(checks.StepToken, 125*time.Millisecond, checks.Phases{
				Resolve: time.Millisecond, Connect: 2 * time.Millisecond, TLS: 10 * time.Millisecond,
				Processing: 100 * time.Millisecond, Transfer: 12 * time.Millisecond}),
			step(checks.StepIntrospect, 31250*time.Microsecond),
			step(checks.StepProbe, 62500*time.Microsecond),
			skipped(checks.StepRevoke),
		},
		Token:         checks.TokenFacts{Minted: true, Active: active(true), IssuedAt: t0, Expiry: t0.Add(2 * time.Hour)},
		TLSCertExpiry: t0.Add(90 * 24 * time.Hour),
	}
}

func acmeSecond() *checks.Result {
	start := t0.Add(time.Minute)
	return &checks.Result{
		Org: "acme-prod", Start: start, Duration: time.Second, Outcome: checks.OutcomeOK,
		Steps: []checks.StepResult{
			step(checks.StepToken, 750*time.Millisecond),
			step(checks.StepIntrospect, 31250*time.Microsecond, checks.Phases{
				Processing: 30 * time.Millisecond, Transfer: 1250 * time.Microsecond}),
			step(checks.StepProbe, 62500*time.Microsecond, checks.Phases{
				Processing: 60 * time.Millisecond, Transfer: 2500 * time.Microsecond}),
			// Exactly on a bucket bound: counted in that bucket (le means <=).
			step(checks.StepRevoke, 5*time.Millisecond),
		},
		Token:         checks.TokenFacts{Minted: true, Active: active(true), IssuedAt: start, Expiry: start.Add(2 * time.Hour)},
		TLSCertExpiry: t0.Add(90 * 24 * time.Hour),
	}
}

func betaNotPermitted() *checks.Result {
	start := t0.Add(30 * time.Second)
	return &checks.Result{
		Org: "beta", Start: start, Duration: 250 * time.Millisecond, Outcome: checks.OutcomeIntrospectionNotPermitted,
		Explanation: "introspection said inactive, userinfo accepted the token",
		Fix:         "let the introspecting client see tokens of this app",
		Steps: []checks.StepResult{
			step(checks.StepToken, 62500*time.Microsecond),
			step(checks.StepIntrospect, 250*time.Millisecond),
			step(checks.StepProbe, 2*time.Second),
			step(checks.StepRevoke, 125*time.Millisecond),
		},
		// No expiry known and plain http: those series stay absent.
		Token: checks.TokenFacts{Minted: true, Active: active(false), IssuedAt: start},
	}
}

const beforeAnyCheck = `
# HELP tokenwatch_checks_total Number of finished checks of the org, by outcome.
# TYPE tokenwatch_checks_total counter
tokenwatch_checks_total{org="acme-prod",outcome="ok"} 0
tokenwatch_checks_total{org="beta",outcome="ok"} 0
# HELP tokenwatch_org_info Information about a configured org: always 1, labelled with its provider, grant type and configured labels.
# TYPE tokenwatch_org_info gauge
tokenwatch_org_info{env="prod",grant="password",org="acme-prod",provider="salesforce",team="crm"} 1
tokenwatch_org_info{grant="client_credentials",org="beta",provider="generic",region="eu"} 1
`

const acmeAfterTwo = `
# HELP tokenwatch_check_duration_seconds Duration of the last check of the org, in seconds.
# TYPE tokenwatch_check_duration_seconds gauge
tokenwatch_check_duration_seconds{org="acme-prod"} 1
# HELP tokenwatch_check_last_run_timestamp_seconds When the last check of the org finished, in seconds since the Unix epoch.
# TYPE tokenwatch_check_last_run_timestamp_seconds gauge
tokenwatch_check_last_run_timestamp_seconds{org="acme-prod"} 1767322861
# HELP tokenwatch_check_outcome The outcome of the last check of the org: always 1, labelled with the outcome and the first step whose outcome was not ok (empty when the check was ok or failed before any request).
# TYPE tokenwatch_check_outcome gauge
tokenwatch_check_outcome{org="acme-prod",outcome="ok",step=""} 1
# HELP tokenwatch_check_success Whether the last check of the org was healthy (1) or not (0).
# TYPE tokenwatch_check_success gauge
tokenwatch_check_success{org="acme-prod"} 1
# HELP tokenwatch_checks_total Number of finished checks of the org, by outcome.
# TYPE tokenwatch_checks_total counter
tokenwatch_checks_total{org="acme-prod",outcome="ok"} 2
# HELP tokenwatch_introspection_active Whether introspection called the token active (1) or inactive (0) in the last check; absent when introspection gave no answer.
# TYPE tokenwatch_introspection_active gauge
tokenwatch_introspection_active{org="acme-prod"} 1
# HELP tokenwatch_org_info Information about a configured org: always 1, labelled with its provider, grant type and configured labels.
# TYPE tokenwatch_org_info gauge
tokenwatch_org_info{env="prod",grant="password",org="acme-prod",provider="salesforce",team="crm"} 1
# HELP tokenwatch_step_duration_seconds Duration of the HTTP exchanges of each step of a check, in seconds; only for orgs with metrics.step_histograms.
# TYPE tokenwatch_step_duration_seconds histogram
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="0.005"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="0.01"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="0.025"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="0.05"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="0.1"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="0.25"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="0.5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="1"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="2.5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="10"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="introspect",le="+Inf"} 2
tokenwatch_step_duration_seconds_sum{org="acme-prod",step="introspect"} 0.0625
tokenwatch_step_duration_seconds_count{org="acme-prod",step="introspect"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="0.005"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="0.01"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="0.025"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="0.05"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="0.1"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="0.25"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="0.5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="1"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="2.5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="10"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="probe",le="+Inf"} 2
tokenwatch_step_duration_seconds_sum{org="acme-prod",step="probe"} 0.125
tokenwatch_step_duration_seconds_count{org="acme-prod",step="probe"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="0.005"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="0.01"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="0.025"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="0.05"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="0.1"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="0.25"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="0.5"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="1"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="2.5"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="5"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="10"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="revoke",le="+Inf"} 1
tokenwatch_step_duration_seconds_sum{org="acme-prod",step="revoke"} 0.005
tokenwatch_step_duration_seconds_count{org="acme-prod",step="revoke"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="0.005"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="0.01"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="0.025"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="0.05"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="0.1"} 0
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="0.25"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="0.5"} 1
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="1"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="2.5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="5"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="10"} 2
tokenwatch_step_duration_seconds_bucket{org="acme-prod",step="token",le="+Inf"} 2
tokenwatch_step_duration_seconds_sum{org="acme-prod",step="token"} 0.875
tokenwatch_step_duration_seconds_count{org="acme-prod",step="token"} 2
# HELP tokenwatch_step_last_duration_seconds Duration of each step's HTTP exchange in the last check of the org, in seconds; absent for steps the last check did not run.
# TYPE tokenwatch_step_last_duration_seconds gauge
tokenwatch_step_last_duration_seconds{org="acme-prod",step="introspect"} 0.03125
tokenwatch_step_last_duration_seconds{org="acme-prod",step="probe"} 0.0625
tokenwatch_step_last_duration_seconds{org="acme-prod",step="revoke"} 0.005
tokenwatch_step_last_duration_seconds{org="acme-prod",step="token"} 0.75
# HELP tokenwatch_step_phase_duration_seconds Duration of each phase of each step's HTTP exchange in the last check, in seconds; only for orgs with metrics.phases.
# TYPE tokenwatch_step_phase_duration_seconds gauge
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="connect",step="introspect"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="processing",step="introspect"} 0.03
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="resolve",step="introspect"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="tls",step="introspect"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="transfer",step="introspect"} 0.00125
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="connect",step="probe"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="processing",step="probe"} 0.06
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="resolve",step="probe"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="tls",step="probe"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="transfer",step="probe"} 0.0025
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="connect",step="revoke"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="processing",step="revoke"} 0.005
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="resolve",step="revoke"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="tls",step="revoke"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="transfer",step="revoke"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="connect",step="token"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="processing",step="token"} 0.75
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="resolve",step="token"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="tls",step="token"} 0
tokenwatch_step_phase_duration_seconds{org="acme-prod",phase="transfer",step="token"} 0
# HELP tokenwatch_tls_certificate_expiry_timestamp_seconds When the first of the TLS certificates presented by the org's endpoints in the last check expires, in seconds since the Unix epoch.
# TYPE tokenwatch_tls_certificate_expiry_timestamp_seconds gauge
tokenwatch_tls_certificate_expiry_timestamp_seconds{org="acme-prod"} 1775098800
# HELP tokenwatch_token_expiry_timestamp_seconds When the token seen in the last check expires, in seconds since the Unix epoch.
# TYPE tokenwatch_token_expiry_timestamp_seconds gauge
tokenwatch_token_expiry_timestamp_seconds{org="acme-prod"} 1767330060
# HELP tokenwatch_token_issued_timestamp_seconds When the token seen in the last check was issued, in seconds since the Unix epoch.
# TYPE tokenwatch_token_issued_timestamp_seconds gauge
tokenwatch_token_issued_timestamp_seconds{org="acme-prod"} 1767322860
# HELP tokenwatch_token_lifetime_seconds Lifetime of the token seen in the last check (expiry minus issue time), in seconds.
# TYPE tokenwatch_token_lifetime_seconds gauge
tokenwatch_token_lifetime_seconds{org="acme-prod"} 7200
`

// betaSeries are beta's lines after its introspection_not_permitted check,
// keyed by the metric family they belong to.
func betaSeries() map[string]string {
	return map[string]string{
		"tokenwatch_check_duration_seconds":           `tokenwatch_check_duration_seconds{org="beta"} 0.25`,
		"tokenwatch_check_last_run_timestamp_seconds": `tokenwatch_check_last_run_timestamp_seconds{org="beta"} 1767322830.25`,
		"tokenwatch_check_outcome":                    `tokenwatch_check_outcome{org="beta",outcome="introspection_not_permitted",step=""} 1`,
		"tokenwatch_check_success":                    `tokenwatch_check_success{org="beta"} 0`,
		"tokenwatch_checks_total": `tokenwatch_checks_total{org="beta",outcome="introspection_not_permitted"} 1
tokenwatch_checks_total{org="beta",outcome="ok"} 0`,
		"tokenwatch_introspection_active": `tokenwatch_introspection_active{org="beta"} 0`,
		"tokenwatch_org_info":             `tokenwatch_org_info{grant="client_credentials",org="beta",provider="generic",region="eu"} 1`,
		// Default settings: the last check's step durations, no histograms, no phases.
		"tokenwatch_step_last_duration_seconds": `tokenwatch_step_last_duration_seconds{org="beta",step="token"} 0.0625
tokenwatch_step_last_duration_seconds{org="beta",step="introspect"} 0.25
tokenwatch_step_last_duration_seconds{org="beta",step="probe"} 2
tokenwatch_step_last_duration_seconds{org="beta",step="revoke"} 0.125`,
		"tokenwatch_token_issued_timestamp_seconds": `tokenwatch_token_issued_timestamp_seconds{org="beta"} 1767322830`,
	}
}

func histogramLines(org, step, sum string, cumulative ...int) string {
	var b strings.Builder
	bounds := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"}
	for i, le := range bounds {
		b.WriteString(`tokenwatch_step_duration_seconds_bucket{org="` + org + `",step="` + step + `",le="` + le + `"} ` + strconv.Itoa(cumulative[i]) + "\n")
	}
	n := strconv.Itoa(cumulative[len(cumulative)-1])
	b.WriteString(`tokenwatch_step_duration_seconds_bucket{org="` + org + `",step="` + step + `",le="+Inf"} ` + n + "\n")
	b.WriteString(`tokenwatch_step_duration_seconds_sum{org="` + org + `",step="` + step + `"} ` + sum + "\n")
	b.WriteString(`tokenwatch_step_duration_seconds_count{org="` + org + `",step="` + step + `"} ` + n)
	return b.String() + "\n"
}

// withSeries adds extra lines, keyed by family name, to the families of an
// exposition that already has them.
func withSeries(exposition string, extra map[string]string) string {
	var out strings.Builder
	family := ""
	flush := func() {
		if s, ok := extra[family]; ok {
			out.WriteString(strings.TrimSuffix(s, "\n") + "\n")
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(exposition), "\n") {
		if strings.HasPrefix(line, "# HELP ") {
			flush()
			family = strings.Fields(line)[2]
		}
		out.WriteString(line + "\n")
	}
	flush()
	return out.String()
}

// betaPending are beta's lines while it has not been checked yet.
func betaPending() map[string]string {
	return map[string]string{
		"tokenwatch_checks_total": `tokenwatch_checks_total{org="beta",outcome="ok"} 0`,
		"tokenwatch_org_info":     betaSeries()["tokenwatch_org_info"],
	}
}

// fakeSource stands in for the agent, the one owner of the orgs and their
// last results: the Collector reads them from it at every scrape.
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

// set makes infos the configured orgs, as a reload does: orgs that stay keep
// their last result, the others are forgotten.
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

// publish hands a finished check over as the agent does: it becomes the
// org's last result, then the Collector observes it.
func (s *fakeSource) publish(c *Collector, info checks.Info, r *checks.Result) {
	s.mu.Lock()
	for i := range s.orgs {
		if s.orgs[i].Info.Name == info.Name {
			s.orgs[i].Last = r
		}
	}
	s.mu.Unlock()
	c.Observe(info, r)
}

// acmeSecondAlone is acme's step histograms after acmeSecond alone.
func acmeSecondAlone() string {
	return "# HELP tokenwatch_step_duration_seconds Duration of the HTTP exchanges of each step of a check, in seconds; only for orgs with metrics.step_histograms.\n" +
		"# TYPE tokenwatch_step_duration_seconds histogram\n" +
		histogramLines("acme-prod", "token", "0.75", 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1) +
		histogramLines("acme-prod", "introspect", "0.03125", 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1) +
		histogramLines("acme-prod", "probe", "0.0625", 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1) +
		histogramLines("acme-prod", "revoke", "0.005", 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
}

// withoutFamilies drops whole metric families from an exposition.
func withoutFamilies(exposition string, names ...string) string {
	var out strings.Builder
	keep := true
	for _, line := range strings.Split(strings.TrimSpace(exposition), "\n") {
		if strings.HasPrefix(line, "# HELP ") {
			keep = !slices.Contains(names, strings.Fields(line)[2])
		}
		if keep {
			out.WriteString(line + "\n")
		}
	}
	return out.String()
}

// The per-org series through checks and reloads: acme has both opt-ins,
// beta the defaults. The fleet histogram has a test of its own.
func TestCollectorScriptedSequence(t *testing.T) {
	acme, beta := acmeInfo(), betaInfo()
	acmeDefaults := acmeInfo()
	acmeDefaults.StepHistograms, acmeDefaults.Phases = false, false
	src := newSource()
	c := NewCollector(src)
	c.fleet = nil
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("a pedantic registry refused the collector: %v", err)
	}

	// The steps run in order, each against the state the previous ones left.
	script := []struct {
		name string
		act  func()
		want string
		// names, when set, limits the comparison to these families.
		names []string
	}{
		{"configured orgs appear before any check", func() {
			src.set(acme, beta)
		}, beforeAnyCheck, nil},
		{"two checks accumulate counts and histograms while gauges follow the last", func() {
			src.publish(c, acme, acmeFirst())
			src.publish(c, acme, acmeSecond())
		}, withSeries(acmeAfterTwo, betaPending()), nil},
		{"a permission gap is a failed check with introspection inactive", func() {
			src.publish(c, beta, betaNotPermitted())
		}, withSeries(acmeAfterTwo, betaSeries()), nil},
		{"a reload that keeps an org keeps its counts", func() {
			src.set(beta, acme)
		}, withSeries(acmeAfterTwo, betaSeries()), nil},
		{"removing an org drops every one of its series", func() {
			src.set(acme)
		}, acmeAfterTwo, nil},
		{"a late result of the removed org changes nothing", func() {
			c.Observe(beta, betaNotPermitted())
		}, acmeAfterTwo, nil},
		{"a result for an org never configured changes nothing", func() {
			c.Observe(checks.Info{Name: "ghost"}, betaNotPermitted())
		}, acmeAfterTwo, nil},
		{"an org added again starts from nothing", func() {
			src.set(acme, beta)
		}, withSeries(acmeAfterTwo, betaPending()), nil},
		{"a reload that turns the opt-ins off drops their series, and only theirs", func() {
			src.set(acmeDefaults, beta)
		}, withoutFamilies(withSeries(acmeAfterTwo, betaPending()), "tokenwatch_step_duration_seconds", "tokenwatch_step_phase_duration_seconds"), nil},
		{"turned on again, the histograms start from the next check", func() {
			src.set(acme, beta)
			src.publish(c, acme, acmeSecond())
		}, acmeSecondAlone(), []string{"tokenwatch_step_duration_seconds"}},
	}
	for _, s := range script {
		t.Run(s.name, func(t *testing.T) {
			s.act()
			if err := testutil.GatherAndCompare(reg, strings.NewReader(s.want), s.names...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// An org added and checked while a scrape runs is missing from that
// scrape's listing; its counts must survive that scrape's pruning.
func TestScrapeKeepsCountsOfAnOrgAddedMeanwhile(t *testing.T) {
	acme := acmeInfo()
	var c *Collector
	calls := 0
	c = NewCollector(SourceFunc(func() []checks.OrgState {
		calls++
		if calls == 1 {
			// Added by a reload and checked after the agent was asked.
			c.Observe(acme, acmeFirst())
			return nil
		}
		return []checks.OrgState{{Info: acme, Last: acmeFirst()}}
	}))
	// The fleet histogram counts every check, listed or not.
	c.fleet = nil
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("first scrape: %d series (%v), want none", n, err)
	}
	want := `
# HELP tokenwatch_checks_total Number of finished checks of the org, by outcome.
# TYPE tokenwatch_checks_total counter
tokenwatch_checks_total{org="acme-prod",outcome="ok"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenwatch_checks_total"); err != nil {
		t.Fatal(err)
	}
}

// A result read back from the state store after a restart is shown (it is
// the org's last result) but not counted: it is no check of this process.
func TestLoadedResultIsShownNotCounted(t *testing.T) {
	acme := acmeInfo()
	loaded := acmeFirst()
	loaded.Loaded = true
	src := newSource(acme)
	c := NewCollector(src)
	src.publish(c, acme, loaded)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP tokenwatch_check_outcome The outcome of the last check of the org: always 1, labelled with the outcome and the first step whose outcome was not ok (empty when the check was ok or failed before any request).
# TYPE tokenwatch_check_outcome gauge
tokenwatch_check_outcome{org="acme-prod",outcome="ok",step=""} 1
# HELP tokenwatch_check_success Whether the last check of the org was healthy (1) or not (0).
# TYPE tokenwatch_check_success gauge
tokenwatch_check_success{org="acme-prod"} 1
# HELP tokenwatch_checks_total Number of finished checks of the org, by outcome.
# TYPE tokenwatch_checks_total counter
tokenwatch_checks_total{org="acme-prod",outcome="ok"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"tokenwatch_check_outcome", "tokenwatch_check_success", "tokenwatch_checks_total", "tokenwatch_step_duration_seconds"); err != nil {
		t.Fatal(err)
	}
}

// tokenwatch_check_outcome names the outcome of the last check and the first
// step whose own outcome was not ok: one series per org, its labels changing
// with the outcome, so that rules match the current outcome exactly.
func TestCheckOutcomeSeries(t *testing.T) {
	failed := func(s checks.Step, o checks.Outcome) checks.StepResult {
		r := step(s, time.Millisecond)
		r.Outcome = o
		return r
	}
	ok := func(s checks.Step) checks.StepResult { return step(s, time.Millisecond) }
	tests := []struct {
		name    string
		outcome checks.Outcome
		steps   []checks.StepResult
		step    string
	}{
		{"ok", checks.OutcomeOK, []checks.StepResult{ok(checks.StepToken), ok(checks.StepIntrospect), skipped(checks.StepProbe), ok(checks.StepRevoke)}, ""},
		{"token refused", checks.OutcomeGrantRejected, []checks.StepResult{failed(checks.StepToken, checks.OutcomeGrantRejected)}, "token"},
		{"introspection refused", checks.OutcomeIntrospectionUnauthorized,
			[]checks.StepResult{ok(checks.StepToken), failed(checks.StepIntrospect, checks.OutcomeIntrospectionUnauthorized)}, "introspect"},
		{"resource call refused after a skipped introspection", checks.OutcomeResourceRejected,
			[]checks.StepResult{ok(checks.StepToken), skipped(checks.StepIntrospect), failed(checks.StepProbe, checks.OutcomeResourceRejected), ok(checks.StepRevoke)}, "probe"},
		{"revoke failed", checks.OutcomeRevokeFailed,
			[]checks.StepResult{ok(checks.StepToken), ok(checks.StepIntrospect), ok(checks.StepProbe), failed(checks.StepRevoke, checks.OutcomeRevokeFailed)}, "revoke"},
		{"the first failed step counts", checks.OutcomeTokenInactive,
			[]checks.StepResult{ok(checks.StepToken), failed(checks.StepIntrospect, checks.OutcomeTokenInactive), failed(checks.StepProbe, checks.OutcomeResourceRejected)}, "introspect"},
		{"failed before any request", checks.OutcomeDiscoveryFailed, nil, ""},
		{"failed although every step did its part", checks.OutcomeExpectationFailed,
			[]checks.StepResult{ok(checks.StepToken), ok(checks.StepIntrospect), ok(checks.StepProbe)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acme := acmeInfo()
			src := newSource(acme)
			c := NewCollector(src)
			src.publish(c, acme, &checks.Result{Org: acme.Name, Start: t0, Outcome: tt.outcome, Steps: tt.steps})
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			want := `
# HELP tokenwatch_check_outcome The outcome of the last check of the org: always 1, labelled with the outcome and the first step whose outcome was not ok (empty when the check was ok or failed before any request).
# TYPE tokenwatch_check_outcome gauge
tokenwatch_check_outcome{org="acme-prod",outcome="` + string(tt.outcome) + `",step="` + tt.step + `"} 1
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenwatch_check_outcome"); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("one series per org, following the last check, none before the first", func(t *testing.T) {
		acme, beta := acmeInfo(), betaInfo()
		src := newSource(acme, beta)
		c := NewCollector(src)
		src.publish(c, acme, &checks.Result{Outcome: checks.OutcomeGrantRejected, Steps: []checks.StepResult{failed(checks.StepToken, checks.OutcomeGrantRejected)}})
		src.publish(c, acme, acmeFirst())
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		want := `
# HELP tokenwatch_check_outcome The outcome of the last check of the org: always 1, labelled with the outcome and the first step whose outcome was not ok (empty when the check was ok or failed before any request).
# TYPE tokenwatch_check_outcome gauge
tokenwatch_check_outcome{org="acme-prod",outcome="ok",step=""} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenwatch_check_outcome"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStepDurationBuckets(t *testing.T) {
	bounds := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	tests := []struct {
		name      string
		durations []time.Duration
		// want is the cumulative count per bound, then +Inf.
		want []uint64
	}{
		{"a value on a bound counts in that bucket", []time.Duration{10 * time.Millisecond},
			[]uint64{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{"a value past the last bound counts only in +Inf", []time.Duration{30 * time.Second},
			[]uint64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"buckets are cumulative", []time.Duration{time.Millisecond, 40 * time.Millisecond, 300 * time.Millisecond, 3 * time.Second},
			[]uint64{1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acme := acmeInfo()
			src := newSource(acme)
			c := NewCollector(src)
			for _, d := range tt.durations {
				src.publish(c, acme, &checks.Result{Outcome: checks.OutcomeOK, Steps: []checks.StepResult{
					step(checks.StepToken, d), skipped(checks.StepProbe)}})
			}
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, mf := range mfs {
				if mf.GetName() != "tokenwatch_step_duration_seconds" {
					continue
				}
				if len(mf.Metric) != 1 {
					t.Fatalf("want one histogram (skipped steps are not observed), got %d", len(mf.Metric))
				}
				found = true
				h := mf.Metric[0].GetHistogram()
				if got := h.GetSampleCount(); got != uint64(len(tt.durations)) {
					t.Errorf("count = %d, want %d", got, len(tt.durations))
				}
				for i, b := range h.GetBucket() {
					if b.GetUpperBound() != bounds[i] {
						t.Errorf("bucket %d bound = %g, want %g", i, b.GetUpperBound(), bounds[i])
					}
					if b.GetCumulativeCount() != tt.want[i] {
						t.Errorf("le=%g count = %d, want %d", bounds[i], b.GetCumulativeCount(), tt.want[i])
					}
				}
			}
			if !found {
				t.Fatal("no tokenwatch_step_duration_seconds in the scrape")
			}
		})
	}
}

func TestOrgInfoLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"no labels", nil,
			`tokenwatch_org_info{grant="password",org="x",provider="salesforce"} 1`},
		{"labels clashing with fixed ones are kept as exported_", map[string]string{"org": "other", "grant": "g", "team": "crm"},
			`tokenwatch_org_info{exported_grant="g",exported_org="other",grant="password",org="x",provider="salesforce",team="crm"} 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(newSource(checks.Info{Name: "x", Provider: "salesforce", Grant: "password", Labels: tt.labels}))
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			want := "# HELP tokenwatch_org_info " + orgInfoHelp + "\n# TYPE tokenwatch_org_info gauge\n" + tt.want + "\n"
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenwatch_org_info"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestInvalidOrgLabelFailsOnlyItsSeries(t *testing.T) {
	c := NewCollector(newSource(acmeInfo(), checks.Info{Name: "bad", Labels: map[string]string{"__reserved": "x"}}))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "__reserved") {
		t.Fatalf("want a scrape error naming the label, got %v", err)
	}
	var infos int
	for _, mf := range mfs {
		if mf.GetName() == "tokenwatch_org_info" {
			infos = len(mf.Metric)
		}
	}
	if infos != 1 {
		t.Errorf("want acme's org_info to survive, got %d series", infos)
	}
}

func TestCollectorIsSafeForConcurrentUse(t *testing.T) {
	acme, beta := acmeInfo(), betaInfo()
	src := newSource()
	c := NewCollector(src)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				switch (i + j) % 7 {
				case 0:
					src.set(acme, beta)
				case 3:
					src.set(beta)
				}
				src.publish(c, acme, acmeFirst())
				src.publish(c, beta, betaNotPermitted())
				if _, err := reg.Gather(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// TestExpositionPassesPromtoolLint runs promtool's metric lint (names, help,
// units, counter suffixes) over a full scrape with two orgs whose org_info
// label sets differ. It needs promtool on PATH, as the integration tier has.
func TestExpositionPassesPromtoolLint(t *testing.T) {
	promtool := e2etest.Tool(t, "promtool", "prometheus")
	acme, beta := acmeInfo(), betaInfo()
	src := newSource(acme, beta)
	c := NewCollector(src)
	src.publish(c, acme, acmeFirst())
	src.publish(c, beta, betaNotPermitted())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	text := exposition(t, reg)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\non:\n%s", err, out, text)
	}
}

func TestReloadRelabelsOrgInfo(t *testing.T) {
	acme := acmeInfo()
	src := newSource(acme)
	c := NewCollector(src)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	src.publish(c, acme, acmeFirst())

	// The reload moves the org to another team and drops env.
	acme.Labels = map[string]string{"team": "billing"}
	src.set(acme)
	want := `
# HELP tokenwatch_org_info ` + orgInfoHelp + `
# TYPE tokenwatch_org_info gauge
tokenwatch_org_info{grant="password",org="acme-prod",provider="salesforce",team="billing"} 1
# HELP tokenwatch_checks_total Number of finished checks of the org, by outcome.
# TYPE tokenwatch_checks_total counter
tokenwatch_checks_total{org="acme-prod",outcome="ok"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenwatch_org_info", "tokenwatch_checks_total"); err != nil {
		t.Fatal(err)
	}
}

// tokenwatch_fleet_step_duration_seconds observes every org's steps by step
// and provider, with no org label: what SLOs read. Skipped steps and results
// read back from the store are not observed; an org's removal takes nothing
// away. It has the classic buckets of the text format and a native
// histogram for a Prometheus that scrapes them.
func TestFleetStepHistogram(t *testing.T) {
	acme, beta := acmeInfo(), betaInfo()
	beta.Provider = checks.ProviderSalesforce
	gen := checks.Info{Name: "gen", Provider: checks.ProviderGeneric, Grant: checks.GrantClientCredentials}
	src := newSource(acme, beta, gen)
	c := NewCollector(src)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	src.publish(c, acme, acmeFirst())        // token, introspect, probe (revoke skipped)
	src.publish(c, beta, betaNotPermitted()) // all four
	src.publish(c, gen, &checks.Result{Outcome: checks.OutcomeOK, Steps: []checks.StepResult{step(checks.StepToken, 3*time.Second)}})
	loaded := acmeSecond()
	loaded.Loaded = true
	src.publish(c, acme, loaded)
	src.set(acme, gen) // beta removed: its observations stay in the fleet's

	want := "# HELP tokenwatch_fleet_step_duration_seconds Duration of the HTTP exchanges of each step of the checks of every org, by step and provider, in seconds.\n" +
		"# TYPE tokenwatch_fleet_step_duration_seconds histogram\n" +
		fleetLines("generic", "token", "3", 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1) +
		fleetLines("salesforce", "introspect", "0.28125", 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2) +
		fleetLines("salesforce", "probe", "2.0625", 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2) +
		fleetLines("salesforce", "revoke", "0.125", 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1) +
		fleetLines("salesforce", "token", "0.1875", 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenwatch_fleet_step_duration_seconds"); err != nil {
		t.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tokenwatch_fleet_step_duration_seconds" {
			continue
		}
		for _, m := range mf.Metric {
			h := m.GetHistogram()
			if h.Schema == nil || len(h.GetPositiveSpan()) == 0 {
				t.Errorf("%v: no native histogram (schema %v, spans %v)", m.GetLabel(), h.Schema, h.GetPositiveSpan())
			}
		}
	}
}

func fleetLines(provider, step, sum string, cumulative ...int) string {
	labels := `provider="` + provider + `",step="` + step + `"`
	var b strings.Builder
	bounds := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"}
	for i, le := range bounds {
		b.WriteString(`tokenwatch_fleet_step_duration_seconds_bucket{` + labels + `,le="` + le + `"} ` + strconv.Itoa(cumulative[i]) + "\n")
	}
	n := strconv.Itoa(cumulative[len(cumulative)-1])
	b.WriteString(`tokenwatch_fleet_step_duration_seconds_bucket{` + labels + `,le="+Inf"} ` + n + "\n")
	b.WriteString(`tokenwatch_fleet_step_duration_seconds_sum{` + labels + `} ` + sum + "\n")
	b.WriteString(`tokenwatch_fleet_step_duration_seconds_count{` + labels + `} ` + n + "\n")
	return b.String()
}
