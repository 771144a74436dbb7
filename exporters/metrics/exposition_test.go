package metrics

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokenwatch/tokenwatch/checks"
)

// scrape gets /metrics from h as Prometheus does (gzip, when gz).
func scrape(t testing.TB, h http.Handler, gz bool) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
	}
	body := rec.Body.Bytes()
	if gz {
		if rec.Header().Get("Content-Encoding") != "gzip" {
			t.Fatal("asked for gzip, got none")
		}
		r, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	}
	return string(body)
}

// normalized parses an exposition and writes it again family by family in
// name order, each family's series in label order: two expositions of the
// same series compare equal whatever their order.
func normalized(t testing.TB, text string) string {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("unparsable exposition: %v\n%s", err, text)
	}
	return normalizedFamilies(t, mfs)
}

func normalizedFamilies(t testing.TB, mfs map[string]*dto.MetricFamily) string {
	t.Helper()
	names := make([]string, 0, len(mfs))
	for n := range mfs {
		names = append(names, n)
	}
	slices.Sort(names)
	var b bytes.Buffer
	for _, n := range names {
		mf := mfs[n]
		for _, m := range mf.Metric {
			slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
		slices.SortFunc(mf.Metric, compareLabels)
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// collected is what the Collector's Collect gives, through a registry, as
// normalized's text.
func collected(t testing.TB, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	return normalizedFamilies(t, m)
}

// The handler's lines are the Collector's: at every step of a sequence of
// checks, reloads, removals, opt-ins, backoffs and awkward label values,
// /metrics (with and without gzip) holds exactly the series a registry
// gathers from the Collector, plus what the handler's own registry holds.
func TestHandlerServesWhatCollectGives(t *testing.T) {
	acme, beta := acmeInfo(), betaInfo()
	acmeDefaults := acmeInfo()
	acmeDefaults.StepHistograms, acmeDefaults.Phases = false, false
	odd := checks.Info{Name: `odd "org"\ with ü`, Provider: checks.ProviderGeneric, Grant: checks.GrantRefreshToken,
		Labels: map[string]string{"team": "a\nb", "org": "clash", "exported_org": "second"}}
	backingOff := func(until time.Time) *checks.Result {
		r := betaNotPermitted()
		r.Outcome = checks.OutcomeGrantRejected
		r.NextAttempt = until
		return r
	}
	loaded := acmeFirst()
	loaded.Loaded = true

	src := newSource()
	c := NewCollector(src)
	ref := prometheus.NewPedanticRegistry()
	ref.MustRegister(c)
	own := prometheus.NewRegistry()
	own.MustRegister(c.Fleet())
	h := c.Handler(own, own, slog.New(slog.DiscardHandler))

	steps := []struct {
		name string
		act  func()
	}{
		{"no orgs", func() {}},
		{"orgs before any check", func() { src.set(acme, beta, odd) }},
		{"a result read back after a restart", func() { src.publish(c, acme, loaded) }},
		{"checks", func() {
			src.publish(c, acme, acmeFirst())
			src.publish(c, acme, acmeSecond())
			src.publish(c, beta, betaNotPermitted())
			src.publish(c, odd, acmeFirst())
		}},
		{"the same again, nothing changed", func() {}},
		{"one more check of one org", func() { src.publish(c, beta, betaNotPermitted()) }},
		{"a backoff that runs", func() { src.publish(c, beta, backingOff(time.Now().Add(time.Hour))) }},
		{"a backoff that has ended", func() { src.publish(c, beta, backingOff(time.Now().Add(-time.Second))) }},
		{"a short backoff", func() { src.publish(c, beta, backingOff(time.Now().Add(time.Second))) }},
		{"the short backoff ends with no new result", func() { time.Sleep(1100 * time.Millisecond) }},
		{"a check counted that is not the result shown (a /probe past its deadline)", func() { c.Observe(beta, acmeFirst()) }},
		{"a reload that reorders and relabels", func() {
			b := betaInfo()
			b.Labels = map[string]string{"region": "us", "tier": "gold"}
			src.set(odd, b, acme)
		}},
		{"opt-ins turned off", func() { src.set(acmeDefaults, beta, odd) }},
		{"opt-ins turned on again and a check", func() {
			src.set(acme, beta, odd)
			src.publish(c, acme, acmeSecond())
		}},
		{"an org removed", func() { src.set(acme, odd) }},
		{"its late result", func() { c.Observe(beta, betaNotPermitted()) }},
		{"added again", func() { src.set(acme, beta, odd) }},
		{"all removed", func() { src.set() }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.act()
			// The handler scrapes first: a scrape through the registry
			// prunes the same counts, so either order must agree.
			for _, gz := range []bool{true, false} {
				// The handler's own registry adds its error counter; the
				// fleet histogram is in both.
				got := strings.TrimSpace(withoutFamilies(normalized(t, scrape(t, h, gz)), "promhttp_metric_handler_errors_total"))
				if want := strings.TrimSpace(collected(t, ref)); got != want {
					t.Fatalf("gzip %v: /metrics differs from Collect\n got:\n%s\nwant:\n%s", gz, got, want)
				}
			}
			got := scrapeProto(t, h)
			delete(got, "promhttp_metric_handler_errors_total")
			if got, want := strings.TrimSpace(normalizedFamilies(t, got)), strings.TrimSpace(collected(t, ref)); got != want {
				t.Fatalf("protobuf: /metrics differs from Collect\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// A check that finishes while a scrape is written shows in the next one;
// scrapes and checks run at once without a race.
func TestHandlerIsSafeForConcurrentUse(t *testing.T) {
	acme, beta := acmeInfo(), betaInfo()
	src := newSource(acme, beta)
	c := NewCollector(src)
	reg := prometheus.NewRegistry()
	h := c.Handler(reg, reg, slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 30 {
				if (i+j)%5 == 0 {
					src.set(beta, acme)
				}
				src.publish(c, acme, acmeFirst())
				src.publish(c, beta, betaNotPermitted())
				scrape(t, h, j%2 == 0)
			}
		})
	}
	wg.Wait()
	got := scrape(t, h, false)
	if !strings.Contains(got, `tokenwatch_checks_total{org="acme-prod",outcome="ok"} 120`) {
		t.Errorf("want acme's 120 checks counted, got:\n%s", got)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "deflate, gzip;q=1.0, *;q=0.5": true, "gzip;q=0": false,
		"gzip; q=0.000": false, "br": false, "x-gzip": false, "identity, gzip;q=0.5": true,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", header, got, want)
		}
	}
}

// BenchmarkScrape compares a scrape of N orgs (each with a full last check)
// through the handler with the same scrape through client_golang's
// promhttp handler over a registry with the Collector: b.N scrapes, each
// after 1/60 of the orgs got a new result (a scrape every second with
// every org on @every 1m), or half of them (handler-half-changed: a scrape
// every 30 s). The results' arrival, where the handler encodes them, is
// not timed. Compare the figures as ratios from one run.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		src := &fakeSource{}
		for i := range n {
			src.orgs = append(src.orgs, checks.OrgState{Info: checks.Info{Name: fmt.Sprintf("org-%05d", i), Provider: checks.ProviderSalesforce,
				Grant: checks.GrantClientCredentials, Labels: map[string]string{"team": "crm", "env": "prod"}}})
		}
		c := NewCollector(src)
		publishAll := func(from, to int) {
			for i := from; i < to; i++ {
				r := acmeSecond()
				r.Org = src.orgs[i].Info.Name
				src.mu.Lock()
				src.orgs[i].Last = r
				src.mu.Unlock()
				c.Observe(src.orgs[i].Info, r)
			}
		}
		publishAll(0, n)
		for _, impl := range []string{"handler", "handler-protobuf", "promhttp", "handler-half-changed"} {
			half := impl == "handler-half-changed"
			b.Run(fmt.Sprintf("%s/orgs=%d", impl, n), func(b *testing.B) {
				reg := prometheus.NewRegistry()
				var h http.Handler
				if impl == "promhttp" {
					reg.MustRegister(c)
					h = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
				} else {
					reg.MustRegister(c.Fleet())
					h = c.Handler(reg, reg, slog.New(slog.DiscardHandler))
				}
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				if impl == "handler-protobuf" {
					req.Header.Set("Accept", `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,text/plain;version=0.0.4;q=0.3`)
				}
				first := &discardWriter{header: http.Header{}}
				h.ServeHTTP(first, req)
				size := first.n
				req.Header.Set("Accept-Encoding", "gzip")
				// 1/60 of the orgs changed: a scrape a second; half of
				// them: Prometheus' 30 s interval at @every 1m.
				step := max(n/60, 1)
				if half {
					step = n / 2
				}
				at := 0
				var sent int
				b.ReportAllocs()
				for b.Loop() {
					// Results arrive between scrapes (and are encoded
					// then, by the handler): only the scrape is timed.
					b.StopTimer()
					publishAll(at, min(at+step, n))
					at = (at + step) % n
					b.StartTimer()
					w := &discardWriter{header: http.Header{}}
					h.ServeHTTP(w, req)
					sent = w.n
				}
				b.ReportMetric(float64(size), "body-bytes")
				b.ReportMetric(float64(sent), "gzip-bytes")
			})
		}
	}
}

// discardWriter is a ResponseWriter that counts what is written.
type discardWriter struct {
	header http.Header
	n      int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(int)     {}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

// Last durations are shown to the microsecond and timestamps to the
// millisecond: finer digits say nothing and cost bytes in every scrape.
func TestValuesAreRounded(t *testing.T) {
	info := betaInfo()
	src := newSource(info)
	c := NewCollector(src)
	at := time.Date(2026, 1, 2, 3, 4, 5, 678912345, time.UTC)
	src.publish(c, info, &checks.Result{Org: info.Name, Start: at, Duration: 5123456 * time.Nanosecond, Outcome: checks.OutcomeOK,
		Steps: []checks.StepResult{step(checks.StepToken, 1234567*time.Nanosecond)},
		Token: checks.TokenFacts{IssuedAt: at, Expiry: at.Add(time.Hour + 1500*time.Nanosecond)}})
	reg := prometheus.NewRegistry()
	got := scrape(t, c.Handler(reg, reg, slog.New(slog.DiscardHandler)), false)
	for _, want := range []string{
		`tokenwatch_check_duration_seconds{org="beta"} 0.005123` + "\n",
		`tokenwatch_step_last_duration_seconds{org="beta",step="token"} 0.001235` + "\n",
		`tokenwatch_check_last_run_timestamp_seconds{org="beta"} 1.767323045684e+09` + "\n",
		`tokenwatch_token_issued_timestamp_seconds{org="beta"} 1.767323045678e+09` + "\n",
		`tokenwatch_token_lifetime_seconds{org="beta"} 3600.000002` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in:\n%s", want, got)
		}
	}
}

// A registry that cannot be gathered makes the scrape fail whole (a 500, as
// promhttp answers), never a cut exposition.
func TestHandlerFailsWholeOnGatherError(t *testing.T) {
	src := newSource(betaInfo())
	c := NewCollector(src)
	reg := prometheus.NewRegistry()
	broken := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		return nil, fmt.Errorf("collector exploded")
	})
	rec := httptest.NewRecorder()
	c.Handler(broken, reg, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "collector exploded") {
		t.Fatalf("got %d: %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "tokenwatch_org_info") {
		t.Errorf("a failed scrape carries series:\n%s", rec.Body)
	}
}

// A scraper that asks for protobuf (Prometheus with native histograms) gets
// it, with the same series and the fleet histogram's native buckets.
func TestHandlerAnswersProtobuf(t *testing.T) {
	acme, beta := acmeInfo(), betaInfo()
	src := newSource(acme, beta)
	c := NewCollector(src)
	src.publish(c, acme, acmeFirst())
	src.publish(c, beta, betaNotPermitted())
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Fleet())
	h := c.Handler(reg, reg, slog.New(slog.DiscardHandler))

	got := scrapeProto(t, h)
	fleet := got["tokenwatch_fleet_step_duration_seconds"]
	if fleet == nil || fleet.Metric[0].GetHistogram().GetSchema() == 0 && len(fleet.Metric[0].GetHistogram().GetPositiveSpan()) == 0 {
		t.Errorf("no native fleet histogram in the protobuf answer: %v", fleet)
	}
	delete(got, "promhttp_metric_handler_errors_total")
	text := strings.TrimSpace(withoutFamilies(normalized(t, scrape(t, h, false)), "promhttp_metric_handler_errors_total"))
	// The text format carries only the classic buckets of the same series.
	if proto := strings.TrimSpace(normalizedFamilies(t, got)); proto != text {
		t.Errorf("protobuf and text answers differ\nprotobuf:\n%s\ntext:\n%s", proto, text)
	}
}

// scrapeProto gets /metrics from h as a Prometheus that scrapes native
// histograms does (protobuf first, gzip) and decodes it.
func scrapeProto(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,text/plain;version=0.0.4;q=0.3`)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/vnd.google.protobuf") {
		t.Fatalf("Content-Type %q, want protobuf", ct)
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	dec := expfmt.NewDecoder(zr, expfmt.NewFormat(expfmt.TypeProtoDelim))
	got := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if got[mf.GetName()] != nil {
			t.Fatalf("family %s twice", mf.GetName())
		}
		got[mf.GetName()] = mf
	}
	return got
}

// A check that finishes between two scrapes is encoded as it finishes, in
// the formats scrapers ask for: the next scrape copies it.
func TestFinishedChecksAreEncodedBeforeTheScrape(t *testing.T) {
	acme, beta := acmeInfo(), betaInfo()
	src := newSource(acme, beta)
	c := NewCollector(src)
	ref := prometheus.NewPedanticRegistry()
	ref.MustRegister(c)
	own := prometheus.NewRegistry()
	h := c.Handler(own, own, slog.New(slog.DiscardHandler)).(*metricsHandler)
	scrape(t, h, true)
	scrapeProto(t, h)
	before := h.scrapeRenders
	src.publish(c, acme, acmeFirst())
	src.publish(c, beta, betaNotPermitted())
	got := strings.TrimSpace(withoutFamilies(normalized(t, scrape(t, h, true)), "promhttp_metric_handler_errors_total", "tokenwatch_fleet_step_duration_seconds"))
	proto := scrapeProto(t, h)
	if n := h.scrapeRenders - before; n != 0 {
		t.Errorf("the scrapes encoded %d orgs themselves, want none", n)
	}
	want := strings.TrimSpace(withoutFamilies(collected(t, ref), "tokenwatch_fleet_step_duration_seconds"))
	if got != want {
		t.Errorf("text differs from Collect\n got:\n%s\nwant:\n%s", got, want)
	}
	delete(proto, "promhttp_metric_handler_errors_total")
	if p := strings.TrimSpace(normalizedFamilies(t, proto)); p != want {
		t.Errorf("protobuf differs from Collect\n got:\n%s\nwant:\n%s", p, want)
	}
}
