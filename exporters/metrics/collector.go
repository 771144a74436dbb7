// Package metrics turns check results into Prometheus metrics: a Collector
// that exposes the last state of every configured org for /metrics (read
// from the agent at scrape time, never copied), the
// agent's own health metrics, and the /probe handler that answers one org's
// metrics on demand.
package metrics

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenwatch/tokenwatch/checks"
)

// stepDurationBuckets returns the upper bounds, in seconds, of the step
// duration histograms (tokenwatch_fleet_step_duration_seconds and the opt-in
// tokenwatch_step_duration_seconds): from a fast loopback answer to a
// request that runs into a typical ten-second timeout.
func stepDurationBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

// The native-histogram side of tokenwatch_fleet_step_duration_seconds, for
// a Prometheus that scrapes native histograms (the protobuf format): each
// bucket at most 10% wider than the last (schema 3), at most 100 buckets
// per series (1 ms to 5.8 s at that resolution; a wider spread lowers the
// resolution rather than adding buckets). The text format carries only the
// classic buckets. With at most 4 steps x 2 providers series, it costs
// little either way.
const (
	nativeBucketFactor     = 1.1
	nativeMaxBuckets       = 100
	nativeMinResetDuration = time.Hour
)

// Label names fixed by the metrics contract. An org label with one of these
// names is exposed as exported_<name>, as Prometheus does for target labels
// that clash with its own.
const (
	labelOrg      = "org"
	labelOutcome  = "outcome"
	labelStep     = "step"
	labelPhase    = "phase"
	labelProvider = "provider"
	labelGrant    = "grant"
)

const (
	orgInfoName = "tokenwatch_org_info"
	orgInfoHelp = "Information about a configured org: always 1, labelled with its provider, grant type and configured labels."
)

// Source lists the configured orgs with their last results. The agent owns
// them (cmd adapts it); the Collector only reads them, on every scrape, so
// an org removed by a reload is gone from the next scrape with all its
// series, and a result that reaches the agent after its org was removed
// never shows.
type Source interface {
	Orgs() []checks.OrgState
}

// SourceFunc adapts a function to Source.
type SourceFunc func() []checks.OrgState

// Orgs implements Source.
func (f SourceFunc) Orgs() []checks.OrgState { return f() }

// Collector exposes, for every org its Source lists, what the last check
// found (a few gauges, and one per step: the duration of each step of the
// last check) and its checks counted by outcome since the org appeared: 14
// series for an org with every step and token fact known, plus one per
// outcome seen (DESIGN.md's budget is 16). Per org and opt-in (checks.Info's
// StepHistograms and Phases, from the org's metrics: settings) it adds a
// histogram of each step's durations and the phases of each step of the
// last check. Step durations of every org are also observed in one
// fleet-wide histogram by step and provider, with no org label.
//
// It builds constant metrics on every scrape from the Source, so it keeps
// no copy of the orgs or their last results: only what accumulates (the
// outcome counters and opt-in step histograms, fed by Observe), pruned at
// each scrape to the orgs the Source lists and their settings.
//
// The Collector is unchecked: Describe sends no descriptors, because the label
// names of tokenwatch_org_info follow each org's configured labels, which differ
// between orgs and change on reload.
//
// Observe and Collect are safe for concurrent use.
type Collector struct {
	src               Source
	checkSuccess      *prometheus.Desc
	checkOutcome      *prometheus.Desc
	checksTotal       *prometheus.Desc
	introspection     *prometheus.Desc
	tokenExpiry       *prometheus.Desc
	tokenIssued       *prometheus.Desc
	tokenLifetime     *prometheus.Desc
	stepLastDuration  *prometheus.Desc
	stepDuration      *prometheus.Desc
	stepPhaseDuration *prometheus.Desc
	checkDuration     *prometheus.Desc
	lastRun           *prometheus.Desc
	tlsExpiry         *prometheus.Desc
	backoffUntil      *prometheus.Desc
	apiRequestsMax    *prometheus.Desc
	apiRequestsLeft   *prometheus.Desc
	signingCertExpiry *prometheus.Desc
	refreshExpiry     *prometheus.Desc
	buckets           []float64
	// fleet is tokenwatch_fleet_step_duration_seconds{step,provider}; nil
	// in a /probe answer, which is about one org.
	fleet *prometheus.HistogramVec

	mu     sync.Mutex
	counts map[string]*orgCounts
	// prerender, when a /metrics handler serves the Collector, encodes an
	// org's series as its check finishes (metricsHandler.prerender).
	prerender func(info checks.Info, r *checks.Result, seq uint64, counts []prometheus.Metric)
	// seq numbers the calls of Observe, so that a scrape prunes only the
	// counts of orgs that were missing from its Source listing before it
	// was taken, never those of an org added while the scrape ran.
	seq uint64
}

// orgCounts is what accumulates for one org between scrapes.
type orgCounts struct {
	outcomes map[checks.Outcome]uint64
	// steps are the org's step histograms, while it has them (opt-in).
	steps map[checks.Step]*histogram
	// seq is the Collector's seq at the last Observe of the org.
	seq uint64
}

// histogram accumulates observations for a constant histogram.
type histogram struct {
	upper []float64
	count uint64
	sum   float64
	// cumulative[i] counts observations <= upper[i].
	cumulative []uint64
}

func newHistogram(upper []float64) *histogram {
	return &histogram{upper: upper, cumulative: make([]uint64, len(upper))}
}

func (h *histogram) observe(v float64) {
	h.count++
	h.sum += v
	for i, upper := range h.upper {
		if v <= upper {
			h.cumulative[i]++
		}
	}
}

func (h *histogram) buckets() map[float64]uint64 {
	b := make(map[float64]uint64, len(h.upper))
	for i, upper := range h.upper {
		b[upper] = h.cumulative[i]
	}
	return b
}

// NewCollector returns a Collector of the orgs src lists. Register it on a
// registry and call Observe with every finished check.
func NewCollector(src Source) *Collector {
	org := []string{labelOrg}
	return &Collector{
		src: src,
		checkSuccess: prometheus.NewDesc("tokenwatch_check_success",
			"Whether the last check of the org was healthy (1) or not (0).", org, nil),
		checkOutcome: prometheus.NewDesc("tokenwatch_check_outcome",
			"The outcome of the last check of the org: always 1, labelled with the outcome and the first step whose outcome was not ok (empty when the check was ok or failed before any request).",
			[]string{labelOrg, labelOutcome, labelStep}, nil),
		checksTotal: prometheus.NewDesc("tokenwatch_checks_total",
			"Number of finished checks of the org, by outcome.", []string{labelOrg, labelOutcome}, nil),
		introspection: prometheus.NewDesc("tokenwatch_introspection_active",
			"Whether introspection called the token active (1) or inactive (0) in the last check; absent when introspection gave no answer.", org, nil),
		tokenExpiry: prometheus.NewDesc("tokenwatch_token_expiry_timestamp_seconds",
			"When the token seen in the last check expires, in seconds since the Unix epoch.", org, nil),
		tokenIssued: prometheus.NewDesc("tokenwatch_token_issued_timestamp_seconds",
			"When the token seen in the last check was issued, in seconds since the Unix epoch.", org, nil),
		tokenLifetime: prometheus.NewDesc("tokenwatch_token_lifetime_seconds",
			"Lifetime of the token seen in the last check (expiry minus issue time), in seconds.", org, nil),
		stepLastDuration: prometheus.NewDesc("tokenwatch_step_last_duration_seconds",
			"Duration of each step's HTTP exchange in the last check of the org, in seconds; absent for steps the last check did not run.",
			[]string{labelOrg, labelStep}, nil),
		stepDuration: prometheus.NewDesc("tokenwatch_step_duration_seconds",
			"Duration of the HTTP exchanges of each step of a check, in seconds; only for orgs with metrics.step_histograms.",
			[]string{labelOrg, labelStep}, nil),
		stepPhaseDuration: prometheus.NewDesc("tokenwatch_step_phase_duration_seconds",
			"Duration of each phase of each step's HTTP exchange in the last check, in seconds; only for orgs with metrics.phases.",
			[]string{labelOrg, labelStep, labelPhase}, nil),
		checkDuration: prometheus.NewDesc("tokenwatch_check_duration_seconds",
			"Duration of the last check of the org, in seconds.", org, nil),
		lastRun: prometheus.NewDesc("tokenwatch_check_last_run_timestamp_seconds",
			"When the last check of the org finished, in seconds since the Unix epoch.", org, nil),
		tlsExpiry: prometheus.NewDesc("tokenwatch_tls_certificate_expiry_timestamp_seconds",
			"When the first of the TLS certificates presented by the org's endpoints in the last check expires, in seconds since the Unix epoch.", org, nil),
		backoffUntil: prometheus.NewDesc("tokenwatch_check_backoff_until_timestamp_seconds",
			"While the org backs off after a rejected login: when its next login attempt may be made, in seconds since the Unix epoch.", org, nil),
		apiRequestsMax: prometheus.NewDesc("tokenwatch_api_requests_max",
			"The org's daily API request allowance (Salesforce DailyApiRequests.Max) from the last check that read the REST API's limits.", org, nil),
		apiRequestsLeft: prometheus.NewDesc("tokenwatch_api_requests_remaining",
			"What remained of the org's daily API request allowance (Salesforce DailyApiRequests.Remaining) at the last check that read the REST API's limits.", org, nil),
		signingCertExpiry: prometheus.NewDesc("tokenwatch_signing_certificate_expiry_timestamp_seconds",
			"When the certificate of the org's jwt_bearer signing key (grant.certificate_file) expires, in seconds since the Unix epoch.", org, nil),
		refreshExpiry: prometheus.NewDesc("tokenwatch_refresh_token_expiry_timestamp_seconds",
			"When the org's refresh token in use expires under grant.refresh_token_policy, in seconds since the Unix epoch.", org, nil),
		buckets: stepDurationBuckets(),
		fleet: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "tokenwatch_fleet_step_duration_seconds",
			Help:                            "Duration of the HTTP exchanges of each step of the checks of every org, by step and provider, in seconds.",
			Buckets:                         stepDurationBuckets(),
			NativeHistogramBucketFactor:     nativeBucketFactor,
			NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
			NativeHistogramMinResetDuration: nativeMinResetDuration,
		}, []string{labelStep, labelProvider}),
		counts: make(map[string]*orgCounts),
	}
}

// Observe counts a finished check: its outcome, its step durations in the
// fleet histogram, and in the org's own histograms when info.StepHistograms.
// What the check found (the gauges) comes from the Source at scrape time. A result
// read back from the state store (r.Loaded) is not a check of this process
// and is not counted. Counts of an org the Source no longer lists are
// dropped at the next scrape, so a late result of a removed org never shows.
func (c *Collector) Observe(info checks.Info, r *checks.Result) {
	if r == nil || r.Loaded {
		return
	}
	c.mu.Lock()
	st := c.countLocked(info, r)
	pre := c.prerender
	var counts []prometheus.Metric
	if pre != nil {
		c.collectCounts(func(m prometheus.Metric) { counts = append(counts, m) }, info.Name, st)
	}
	seq := st.seq
	c.mu.Unlock()
	if pre != nil {
		// The scrape finds the org's series encoded already.
		pre(info, r, seq, counts)
	}
}

// countLocked counts a finished check under c.mu and returns the org's counts.
func (c *Collector) countLocked(info checks.Info, r *checks.Result) *orgCounts {
	c.seq++
	st, ok := c.counts[info.Name]
	if !ok {
		st = &orgCounts{
			outcomes: map[checks.Outcome]uint64{},
			steps:    map[checks.Step]*histogram{},
		}
		c.counts[info.Name] = st
	}
	st.seq = c.seq
	st.outcomes[r.Outcome]++
	for _, s := range r.Steps {
		if s.Skipped {
			continue
		}
		if c.fleet != nil {
			c.fleet.WithLabelValues(string(s.Step), info.Provider).Observe(s.Duration.Seconds())
		}
		if !info.StepHistograms {
			continue
		}
		h, ok := st.steps[s.Step]
		if !ok {
			h = newHistogram(c.buckets)
			st.steps[s.Step] = h
		}
		h.observe(s.Duration.Seconds())
	}
	return st
}

// Fleet returns the fleet-wide step histogram, for the registry that
// Handler gathers from; it is part of Collect too.
func (c *Collector) Fleet() prometheus.Collector { return c.fleet }

// Describe sends nothing, which makes the Collector unchecked; see Collector.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics() {
		ch <- m
	}
	if c.fleet != nil {
		c.fleet.Collect(ch)
	}
}

// metrics builds the scrape: the orgs from the Source (asked without the
// lock, as it takes the agent's), their counts under the lock. The metrics
// are sent after, so that a slow scrape never holds up Observe.
func (c *Collector) metrics() []prometheus.Metric {
	c.mu.Lock()
	mark := c.seq
	c.mu.Unlock()
	var orgs []checks.OrgState
	if c.src != nil {
		orgs = c.src.Orgs()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	listed := make(map[string]bool, len(orgs))
	for _, o := range orgs {
		listed[o.Info.Name] = true
	}
	for name, st := range c.counts {
		// Not listed, and not observed since the listing: removed.
		if !listed[name] && st.seq <= mark {
			delete(c.counts, name)
		}
	}
	var out []prometheus.Metric
	emit := func(m prometheus.Metric) { out = append(out, m) }
	// One descriptor per distinct set of org label names, built per scrape so
	// that label sets gone after a reload leave nothing behind.
	infoDescs := map[string]*prometheus.Desc{}
	for _, o := range orgs {
		name := o.Info.Name
		st := c.counts[name]
		if st != nil && !o.Info.StepHistograms {
			// Turned off by a reload: gone with their series.
			clear(st.steps)
		}
		c.collectInfo(emit, infoDescs, o.Info)
		c.collectCounts(emit, name, st)
		if o.Last != nil {
			c.collectLast(emit, o.Info, o.Last)
		}
	}
	return out
}

func (c *Collector) collectInfo(emit func(prometheus.Metric), descs map[string]*prometheus.Desc, info checks.Info) {
	names, values := infoLabels(info)
	key := strings.Join(names, "\xff")
	desc, ok := descs[key]
	if !ok {
		desc = prometheus.NewDesc(orgInfoName, orgInfoHelp, names, nil)
		descs[key] = desc
	}
	// Not MustNewConstMetric: a label name the registry refuses must fail
	// this one series, reported on scrape, not panic the daemon.
	m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, 1, values...)
	if err != nil {
		m = prometheus.NewInvalidMetric(desc, err)
	}
	emit(m)
}

func (c *Collector) collectCounts(emit func(prometheus.Metric), org string, st *orgCounts) {
	// ok is always present so that a rate over it starts from zero rather
	// than from the first healthy check.
	if st == nil {
		emit(prometheus.MustNewConstMetric(c.checksTotal, prometheus.CounterValue, 0, org, string(checks.OutcomeOK)))
		return
	}
	if _, seen := st.outcomes[checks.OutcomeOK]; !seen {
		emit(prometheus.MustNewConstMetric(c.checksTotal, prometheus.CounterValue, 0, org, string(checks.OutcomeOK)))
	}
	for outcome, n := range st.outcomes {
		emit(prometheus.MustNewConstMetric(c.checksTotal, prometheus.CounterValue, float64(n), org, string(outcome)))
	}
	for step, h := range st.steps {
		emit(prometheus.MustNewConstHistogram(c.stepDuration, h.count, h.sum, h.buckets(), org, string(step)))
	}
}

func (c *Collector) collectLast(emit func(prometheus.Metric), info checks.Info, r *checks.Result) {
	org := info.Name
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		emit(prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, append([]string{org}, labels...)...))
	}
	gauge(c.checkSuccess, boolValue(r.Success()))
	gauge(c.checkOutcome, 1, string(r.Outcome), string(r.FailedStep()))
	gauge(c.checkDuration, seconds(r.Duration))
	gauge(c.lastRun, unixSeconds(r.Start.Add(r.Duration)))
	if r.Token.Active != nil {
		gauge(c.introspection, boolValue(*r.Token.Active))
	}
	if !r.Token.Expiry.IsZero() {
		gauge(c.tokenExpiry, unixSeconds(r.Token.Expiry))
	}
	if !r.Token.IssuedAt.IsZero() {
		gauge(c.tokenIssued, unixSeconds(r.Token.IssuedAt))
	}
	if lt := r.Token.Lifetime(); lt != 0 {
		gauge(c.tokenLifetime, seconds(lt))
	}
	if !r.TLSCertExpiry.IsZero() {
		gauge(c.tlsExpiry, unixSeconds(r.TLSCertExpiry))
	}
	if r.NextAttempt.After(time.Now()) {
		gauge(c.backoffUntil, unixSeconds(r.NextAttempt))
	}
	if a := r.APIRequests; a != nil {
		gauge(c.apiRequestsMax, float64(a.Max))
		gauge(c.apiRequestsLeft, float64(a.Remaining))
	}
	if !r.SigningCertExpiry.IsZero() {
		gauge(c.signingCertExpiry, unixSeconds(r.SigningCertExpiry))
	}
	if !r.RefreshTokenExpiry.IsZero() {
		gauge(c.refreshExpiry, unixSeconds(r.RefreshTokenExpiry))
	}
	for _, s := range r.Steps {
		if s.Skipped {
			continue
		}
		gauge(c.stepLastDuration, seconds(s.Duration), string(s.Step))
		if !info.Phases {
			continue
		}
		for i, d := range s.Phases.Values() {
			gauge(c.stepPhaseDuration, seconds(d), string(s.Step), checks.PhaseNames[i])
		}
	}
}

// infoLabels returns the label names and values of tokenwatch_org_info for
// info: the fixed ones first, then the org's own labels sorted by name.
func infoLabels(info checks.Info) (names, values []string) {
	names = []string{labelOrg, labelProvider, labelGrant}
	values = []string{info.Name, info.Provider, info.Grant}
	taken := map[string]bool{labelOrg: true, labelProvider: true, labelGrant: true}
	keys := make([]string, 0, len(info.Labels))
	for k := range info.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := k
		if taken[name] {
			name = "exported_" + k
		}
		if taken[name] {
			// The configuration holds both team and exported_team next to a
			// clash; the first one (in name order) keeps the slot.
			continue
		}
		taken[name] = true
		names = append(names, name)
		values = append(values, info.Labels[k])
	}
	return names, values
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds keeps millisecond precision without the int64 nanosecond
// overflow of UnixNano for times past 2262 (some servers send huge exp).
// Finer digits would say nothing (the clocks compared are not that close)
// and cost bytes in every scrape: a timestamp is 4 characters shorter.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond()/1e6)/1e3
}

// seconds is a last duration in seconds to the microsecond: the reported
// durations are as accurate as that (docs/performance.md), and the shorter
// number saves bytes in every scrape.
func seconds(d time.Duration) float64 {
	return d.Round(time.Microsecond).Seconds()
}
