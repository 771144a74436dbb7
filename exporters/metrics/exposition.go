package metrics

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/tokenwatch/tokenwatch/checks"
)

// Handler serves /metrics: the Collector's per-org series followed, family
// by family in name order, by everything g gathers (the process, the
// agent's own metrics, the fleet histogram). The Collector must not be
// registered on g.
//
// At 10,000 orgs the per-org series are 140,000, and building them as
// constant metrics, sorting and encoding them on every scrape cost most of
// a second of CPU and hundreds of megabytes of garbage. They change only
// when an org's check finishes (about once a minute each), so the handler
// keeps each org's lines as client_golang's text encoder wrote them, and
// writes them again until the org's result, counts or settings change: a
// scrape is then mostly copying bytes. The lines are the Collector's own
// (Collect), so /metrics and /probe cannot disagree.
//
// It answers in the Prometheus text format (0.0.4), which every Prometheus
// version accepts, gzip-compressed at the fastest level when the scraper
// accepts gzip. A scraper that asks for the protobuf format (a Prometheus
// that scrapes native histograms) is answered by promhttp from the
// Collector's Collect instead: slower, but with the fleet histogram's
// native buckets.
func (c *Collector) Handler(g prometheus.Gatherer, reg prometheus.Registerer, logger *slog.Logger) http.Handler {
	h := &metricsHandler{c: c, g: g, logger: logger, orgs: map[string]*orgText{},
		infoDescs: map[string]*prometheus.Desc{}, fams: map[*prometheus.Desc]*family{}}
	h.errors = promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "promhttp_metric_handler_errors_total",
		Help: "Total number of internal errors encountered by the promhttp metric handler.",
	}, []string{"cause"})
	h.errors.WithLabelValues("gathering")
	h.errors.WithLabelValues("encoding")
	orgs := prometheus.NewRegistry()
	orgs.MustRegister(perOrgCollector{c})
	h.proto = promhttp.HandlerFor(prometheus.Gatherers{g, orgs},
		promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)})
	return h
}

// perOrgCollector is the Collector without the fleet histogram, which the
// handler's registry holds.
type perOrgCollector struct{ c *Collector }

func (perOrgCollector) Describe(chan<- *prometheus.Desc) {}

func (o perOrgCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range o.c.metrics() {
		ch <- m
	}
}

type metricsHandler struct {
	c      *Collector
	g      prometheus.Gatherer
	logger *slog.Logger
	errors *prometheus.CounterVec
	// proto answers the scrapes that ask for the protobuf format.
	proto http.Handler

	// mu makes scrapes take turns: they share the cache.
	mu sync.Mutex
	// orgs holds the lines of each listed org, by name.
	orgs map[string]*orgText
	// infoDescs are tokenwatch_org_info's descriptors by label names
	// (Collector.collectInfo); fams the families by descriptor.
	infoDescs map[string]*prometheus.Desc
	fams      map[*prometheus.Desc]*family
	// sorted is the listed orgs in name order, for the scrape being written.
	sorted []string
}

// family is one metric family of the Collector's: its header and, while
// a scrape is written, the orgs' lines in it.
type family struct {
	name, header string
}

// orgText is an org's lines, by family, and what they were written from.
type orgText struct {
	info checks.Info
	last *checks.Result
	seq  uint64
	// until is when the lines go stale by themselves (a backoff's end);
	// zero when they do not.
	until time.Time
	lines []familyLines
}

type familyLines struct {
	fam  *family
	text []byte
}

func (t *orgText) valid(o checks.OrgState, seq uint64, now time.Time) bool {
	return t.last == o.Last && t.seq == seq && (t.until.IsZero() || now.Before(t.until)) &&
		t.info.Name == o.Info.Name && t.info.Provider == o.Info.Provider && t.info.Grant == o.Info.Grant &&
		t.info.StepHistograms == o.Info.StepHistograms && t.info.Phases == o.Info.Phases &&
		maps.Equal(t.info.Labels, o.Info.Labels)
}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if expfmt.Negotiate(r.Header).FormatType() == expfmt.TypeProtoDelim {
		h.proto.ServeHTTP(w, r)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Everything that can fail happens before the first byte is written,
	// so that a failure is a 500 and not a cut exposition.
	others, err := h.g.Gather()
	var fams []*family
	if err == nil {
		fams, err = h.orgLines(time.Now())
	}
	if err != nil {
		h.logger.Error("error gathering metrics", "err", err)
		h.errors.WithLabelValues("gathering").Inc()
		http.Error(w, "An error has occurred while gathering metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	hdr.Add("Vary", "Accept-Encoding")
	// Written as it is produced: at 10,000 orgs the body is about 10 MB,
	// which a buffer would hold for nothing between scrapes.
	bw := bufio.NewWriterSize(w, 32<<10)
	var out io.Writer = bw
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		hdr.Set("Content-Encoding", "gzip")
		gz := gzipWriters.Get().(*gzip.Writer)
		gz.Reset(bw)
		defer func() {
			gz.Reset(nil)
			gzipWriters.Put(gz)
		}()
		out = gz
	}
	err = h.write(out, others, fams)
	if gz, ok := out.(*gzip.Writer); ok && err == nil {
		err = gz.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// The scraper went away, or an encoding failed mid-way.
		h.errors.WithLabelValues("encoding").Inc()
		h.logger.Debug("error writing metrics", "err", err)
	}
}

// acceptsGzip reads an Accept-Encoding header: gzip listed, not with q=0.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

// write writes the exposition: the families of others (gathered) and of
// the orgs' lines, merged in name order.
func (h *metricsHandler) write(w io.Writer, others []*dto.MetricFamily, fams []*family) error {
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	i := 0
	for _, f := range fams {
		for ; i < len(others) && others[i].GetName() < f.name; i++ {
			if err := enc.Encode(others[i]); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(w, f.header); err != nil {
			return err
		}
		for _, o := range h.sorted {
			for _, l := range h.orgs[o].lines {
				if l.fam == f {
					if _, err := w.Write(l.text); err != nil {
						return err
					}
				}
			}
		}
	}
	for ; i < len(others); i++ {
		if err := enc.Encode(others[i]); err != nil {
			return err
		}
	}
	return nil
}

// orgLines brings the lines of every org the Collector's Source lists up
// to date and returns the families they hold, in name order; h.sorted is
// the orgs in name order.
func (h *metricsHandler) orgLines(now time.Time) ([]*family, error) {
	c := h.c
	c.mu.Lock()
	mark := c.seq
	c.mu.Unlock()
	var orgs []checks.OrgState
	if c.src != nil {
		orgs = c.src.Orgs()
	}
	if !slices.IsSortedFunc(orgs, func(a, b checks.OrgState) int { return strings.Compare(a.Info.Name, b.Info.Name) }) {
		orgs = slices.Clone(orgs)
		slices.SortFunc(orgs, func(a, b checks.OrgState) int { return strings.Compare(a.Info.Name, b.Info.Name) })
	}

	// What needs the Collector's lock: pruning its counts as Collect does,
	// and the counts of the orgs whose lines are stale.
	type stale struct {
		o      checks.OrgState
		seq    uint64
		counts []prometheus.Metric
	}
	var todo []stale
	c.mu.Lock()
	listed := make(map[string]bool, len(orgs))
	for _, o := range orgs {
		listed[o.Info.Name] = true
	}
	for name, st := range c.counts {
		if !listed[name] && st.seq <= mark {
			delete(c.counts, name)
		}
	}
	for _, o := range orgs {
		st := c.counts[o.Info.Name]
		var seq uint64
		if st != nil {
			seq = st.seq
			if !o.Info.StepHistograms {
				// Turned off by a reload: gone with their series.
				clear(st.steps)
			}
		}
		if t := h.orgs[o.Info.Name]; t != nil && t.valid(o, seq, now) {
			continue
		}
		var counts []prometheus.Metric
		c.collectCounts(func(m prometheus.Metric) { counts = append(counts, m) }, o.Info.Name, st)
		todo = append(todo, stale{o: o, seq: seq, counts: counts})
	}
	c.mu.Unlock()

	for name := range h.orgs {
		if !listed[name] {
			delete(h.orgs, name)
		}
	}
	if len(h.infoDescs) > maxInfoDescs {
		// Label sets of orgs long gone: start afresh.
		clear(h.infoDescs)
		clear(h.fams)
		clear(h.orgs)
		return h.orgLines(now)
	}
	for _, s := range todo {
		t, err := h.render(s.o, s.seq, s.counts, now)
		if err != nil {
			return nil, err
		}
		h.orgs[s.o.Info.Name] = t
	}

	h.sorted = h.sorted[:0]
	seen := map[*family]bool{}
	var fams []*family
	for _, o := range orgs {
		h.sorted = append(h.sorted, o.Info.Name)
		for _, l := range h.orgs[o.Info.Name].lines {
			if !seen[l.fam] {
				seen[l.fam] = true
				fams = append(fams, l.fam)
			}
		}
	}
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	return fams, nil
}

// maxInfoDescs bounds the descriptors of tokenwatch_org_info kept for
// label sets seen (one per distinct set of label names).
const maxInfoDescs = 1000

// render writes the lines of org o: its info, counts (taken by the caller
// under the Collector's lock) and last result.
func (h *metricsHandler) render(o checks.OrgState, seq uint64, counts []prometheus.Metric, now time.Time) (*orgText, error) {
	c := h.c
	t := &orgText{info: o.Info, last: o.Last, seq: seq}
	ms := counts
	emit := func(m prometheus.Metric) { ms = append(ms, m) }
	c.collectInfo(emit, h.infoDescs, o.Info)
	if o.Last != nil {
		c.collectLast(emit, o.Info, o.Last)
		if na := o.Last.NextAttempt; na.After(now) {
			t.until = na
		}
	}
	byFam := map[*family][]*dto.Metric{}
	var order []*family
	for _, m := range ms {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			// A series the registry would refuse (a label name it does not
			// accept): left out, as promhttp's ContinueOnError does.
			h.logger.Error("error gathering metrics", "org", o.Info.Name, "err", err)
			h.errors.WithLabelValues("gathering").Inc()
			continue
		}
		f, err := h.family(m.Desc(), &d)
		if err != nil {
			return nil, err
		}
		if _, ok := byFam[f]; !ok {
			order = append(order, f)
		}
		byFam[f] = append(byFam[f], &d)
	}
	var buf bytes.Buffer
	for _, f := range order {
		ds := byFam[f]
		slices.SortFunc(ds, compareLabels)
		buf.Reset()
		mf := &dto.MetricFamily{Name: &f.name, Type: metricType(ds[0]).Enum(), Metric: ds}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return nil, fmt.Errorf("org %s: %w", o.Info.Name, err)
		}
		text := buf.Bytes()
		for bytes.HasPrefix(text, []byte("# ")) {
			text = text[bytes.IndexByte(text, '\n')+1:]
		}
		t.lines = append(t.lines, familyLines{fam: f, text: bytes.Clone(text)})
	}
	return t, nil
}

// family returns the family of the metrics of desc, learning its name,
// help and type from the first one: the same header client_golang writes.
func (h *metricsHandler) family(desc *prometheus.Desc, d *dto.Metric) (*family, error) {
	if f, ok := h.fams[desc]; ok {
		return f, nil
	}
	name, help, err := describe(desc)
	if err != nil {
		return nil, err
	}
	// One family per name: the descriptors of tokenwatch_org_info differ
	// by label names only.
	for _, f := range h.fams {
		if f.name == name {
			h.fams[desc] = f
			return f, nil
		}
	}
	var buf bytes.Buffer
	mf := &dto.MetricFamily{Name: &name, Help: &help, Type: metricType(d).Enum(), Metric: []*dto.Metric{d}}
	if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
		return nil, err
	}
	text := buf.Bytes()
	end := 0
	for bytes.HasPrefix(text[end:], []byte("# ")) {
		end += bytes.IndexByte(text[end:], '\n') + 1
	}
	f := &family{name: name, header: string(text[:end])}
	h.fams[desc] = f
	return f, nil
}

// describe reads the name and help of a descriptor from its String form,
// Desc{fqName: "...", help: "...", ...}: client_golang has no accessor.
func describe(desc *prometheus.Desc) (name, help string, err error) {
	s := desc.String()
	read := func(key string) (string, error) {
		_, rest, ok := strings.Cut(s, key+": ")
		if !ok {
			return "", fmt.Errorf("descriptor %s: no %s", s, key)
		}
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", fmt.Errorf("descriptor %s: %s: %w", s, key, err)
		}
		return strconv.Unquote(q)
	}
	if name, err = read("fqName"); err != nil {
		return "", "", err
	}
	help, err = read("help")
	return name, help, err
}

func metricType(d *dto.Metric) dto.MetricType {
	switch {
	case d.Counter != nil:
		return dto.MetricType_COUNTER
	case d.Gauge != nil:
		return dto.MetricType_GAUGE
	case d.Histogram != nil:
		return dto.MetricType_HISTOGRAM
	case d.Summary != nil:
		return dto.MetricType_SUMMARY
	}
	return dto.MetricType_UNTYPED
}

// compareLabels orders metrics of a family by their label values, in
// label name order, as client_golang's Gather does.
func compareLabels(a, b *dto.Metric) int {
	for i := range min(len(a.Label), len(b.Label)) {
		if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	return len(a.Label) - len(b.Label)
}
