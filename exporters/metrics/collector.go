// Package metrics turns check results into Prometheus metrics: a Collector
// that mirrors the last state of every configured org for /metrics, the
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

// stepDurationBuckets returns the upper bounds, in seconds, of the
// tokenwatch_step_duration_seconds histogram: from a fast loopback answer to
// a request that runs into a typical ten-second timeout.
func stepDurationBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

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

// Collector mirrors, for every configured org, what the last check found plus
// counts and step latencies accumulated since the org appeared. It builds
// constant metrics on every scrape, so an org removed by SetOrgs disappears
// from the next scrape entirely instead of leaving stale series behind.
//
// The Collector is unchecked: Describe sends no descriptors, because the label
// names of tokenwatch_org_info follow each org's configured labels, which differ
// between orgs and change on reload.
//
// SetOrgs, Observe and Collect are safe for concurrent use.
type Collector struct {
	checkSuccess      *prometheus.Desc
	checksTotal       *prometheus.Desc
	introspection     *prometheus.Desc
	tokenExpiry       *prometheus.Desc
	tokenIssued       *prometheus.Desc
	tokenLifetime     *prometheus.Desc
	stepDuration      *prometheus.Desc
	stepPhaseDuration *prometheus.Desc
	checkDuration     *prometheus.Desc
	lastRun           *prometheus.Desc
	tlsExpiry         *prometheus.Desc
	backoffUntil      *prometheus.Desc
	buckets           []float64

	mu   sync.Mutex
	orgs map[string]*orgState
}

// orgState is what the Collector keeps for one org.
type orgState struct {
	info checks.Info
	// last is the most recent result; nil until the first check finished.
	last     *checks.Result
	outcomes map[checks.Outcome]uint64
	steps    map[checks.Step]*histogram
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

// NewCollector returns a Collector with no orgs. Register it on a registry
// and call SetOrgs with the configured orgs.
func NewCollector() *Collector {
	org := []string{labelOrg}
	return &Collector{
		checkSuccess: prometheus.NewDesc("tokenwatch_check_success",
			"Whether the last check of the org was healthy (1) or not (0).", org, nil),
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
		stepDuration: prometheus.NewDesc("tokenwatch_step_duration_seconds",
			"Duration of the HTTP exchanges of each step of a check, in seconds.", []string{labelOrg, labelStep}, nil),
		stepPhaseDuration: prometheus.NewDesc("tokenwatch_step_phase_duration_seconds",
			"Duration of each phase of each step's HTTP exchange in the last check, in seconds.", []string{labelOrg, labelStep, labelPhase}, nil),
		checkDuration: prometheus.NewDesc("tokenwatch_check_duration_seconds",
			"Duration of the last check of the org, in seconds.", org, nil),
		lastRun: prometheus.NewDesc("tokenwatch_check_last_run_timestamp_seconds",
			"When the last check of the org finished, in seconds since the Unix epoch.", org, nil),
		tlsExpiry: prometheus.NewDesc("tokenwatch_tls_certificate_expiry_timestamp_seconds",
			"When the first of the TLS certificates presented by the org's endpoints in the last check expires, in seconds since the Unix epoch.", org, nil),
		backoffUntil: prometheus.NewDesc("tokenwatch_check_backoff_until_timestamp_seconds",
			"While the org backs off after a rejected login: when its next login attempt may be made, in seconds since the Unix epoch.", org, nil),
		buckets: stepDurationBuckets(),
		orgs:    make(map[string]*orgState),
	}
}

// SetOrgs replaces the set of orgs. Orgs missing from infos are forgotten
// with all their series; orgs that stay keep their counts and last result,
// and take the identity (provider, grant, labels) given here.
func (c *Collector) SetOrgs(infos []checks.Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[string]*orgState, len(infos))
	for _, info := range infos {
		st, ok := c.orgs[info.Name]
		if !ok {
			st = &orgState{
				outcomes: map[checks.Outcome]uint64{},
				steps:    map[checks.Step]*histogram{},
			}
		}
		st.info = copyInfo(info)
		next[info.Name] = st
	}
	c.orgs = next
}

// Observe records a finished check. A result for an org not in the current
// set (one that finished after the org was removed) is ignored. r must not be
// modified afterwards: the Collector keeps it as the org's last result.
func (c *Collector) Observe(info checks.Info, r *checks.Result) {
	if r == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.orgs[info.Name]
	if !ok {
		return
	}
	st.last = r
	if r.Loaded {
		// Read back from the state store: shown, but not a check of this process.
		return
	}
	st.outcomes[r.Outcome]++
	for _, s := range r.Steps {
		if s.Skipped {
			continue
		}
		h, ok := st.steps[s.Step]
		if !ok {
			h = newHistogram(c.buckets)
			st.steps[s.Step] = h
		}
		h.observe(s.Duration.Seconds())
	}
}

// Describe sends nothing, which makes the Collector unchecked; see Collector.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics() {
		ch <- m
	}
}

// metrics builds the scrape under the lock and sends it after, so that a
// slow scrape never holds up Observe.
func (c *Collector) metrics() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []prometheus.Metric
	emit := func(m prometheus.Metric) { out = append(out, m) }
	// One descriptor per distinct set of org label names, built per scrape so
	// that label sets gone after a reload leave nothing behind.
	infoDescs := map[string]*prometheus.Desc{}
	for name, st := range c.orgs {
		c.collectInfo(emit, infoDescs, st.info)
		c.collectCounts(emit, name, st)
		if st.last != nil {
			c.collectLast(emit, name, st.last)
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

func (c *Collector) collectCounts(emit func(prometheus.Metric), org string, st *orgState) {
	// ok is always present so that a rate over it starts from zero rather
	// than from the first healthy check.
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

func (c *Collector) collectLast(emit func(prometheus.Metric), org string, r *checks.Result) {
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		emit(prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, append([]string{org}, labels...)...))
	}
	gauge(c.checkSuccess, boolValue(r.Success()))
	gauge(c.checkDuration, r.Duration.Seconds())
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
		gauge(c.tokenLifetime, lt.Seconds())
	}
	if !r.TLSCertExpiry.IsZero() {
		gauge(c.tlsExpiry, unixSeconds(r.TLSCertExpiry))
	}
	if r.NextAttempt.After(time.Now()) {
		gauge(c.backoffUntil, unixSeconds(r.NextAttempt))
	}
	for _, s := range r.Steps {
		if s.Skipped {
			continue
		}
		for i, d := range s.Phases.Values() {
			gauge(c.stepPhaseDuration, d.Seconds(), string(s.Step), checks.PhaseNames[i])
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

// copyInfo detaches the labels map from the caller's, which may change on reload.
func copyInfo(info checks.Info) checks.Info {
	if info.Labels != nil {
		labels := make(map[string]string, len(info.Labels))
		for k, v := range info.Labels {
			labels[k] = v
		}
		info.Labels = labels
	}
	return info
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds keeps sub-second precision without the int64 nanosecond
// overflow of UnixNano for times past 2262 (some servers send huge exp).
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}
