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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

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
// version accepts, or in the protobuf format when the scraper asks for it
// (a Prometheus that scrapes native histograms, or one told to prefer it
// with scrape_protocols: about half the bytes), gzip-compressed at the
// fastest level when the scraper accepts gzip.
func (c *Collector) Handler(g prometheus.Gatherer, reg prometheus.Registerer, logger *slog.Logger) http.Handler {
	h := &metricsHandler{c: c, g: g, logger: logger,
		infoDescs: map[string]*prometheus.Desc{}, fams: map[*prometheus.Desc]*family{}}
	for i := range h.caches {
		h.caches[i] = map[string]*orgText{}
	}
	h.errors = promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "promhttp_metric_handler_errors_total",
		Help: "Total number of internal errors encountered by the promhttp metric handler.",
	}, []string{"cause"})
	h.errors.WithLabelValues("gathering")
	h.errors.WithLabelValues("encoding")
	for i := range h.pending {
		h.pending[i] = map[string]*orgText{}
	}
	c.mu.Lock()
	c.prerender = h.prerender
	c.mu.Unlock()
	return h
}

// format is one exposition format the handler writes.
type format int

const (
	formatText format = iota
	formatProto
	formats
)

func (f format) expfmt() expfmt.Format {
	if f == formatProto {
		return expfmt.NewFormat(expfmt.TypeProtoDelim)
	}
	return expfmt.NewFormat(expfmt.TypeTextPlain)
}

type metricsHandler struct {
	c      *Collector
	g      prometheus.Gatherer
	logger *slog.Logger
	errors *prometheus.CounterVec

	// mu makes scrapes take turns: they share the caches.
	mu sync.Mutex
	// scrapeRenders counts the orgs scrapes had to encode themselves.
	scrapeRenders int
	// renderMu guards infoDescs and fams, which scrapes and prerender
	// share; taken after mu.
	renderMu sync.Mutex
	// pending holds, per format, what prerender encoded since the last
	// scrape, by org name; used marks the formats scrapers asked for.
	pendMu  sync.Mutex
	pending [formats]map[string]*orgText
	used    [formats]atomic.Bool
	// caches hold, per format, what each listed org's series encode to,
	// by org name; a format no scraper asks for costs nothing.
	caches [formats]map[string]*orgText
	// infoDescs are tokenwatch_org_info's descriptors by label names
	// (Collector.collectInfo); fams the families by descriptor.
	infoDescs map[string]*prometheus.Desc
	fams      map[*prometheus.Desc]*family
	// sorted is the listed orgs in name order, for the scrape being written.
	sorted []string
}

// family is one metric family of the Collector's: its name, and its
// header in each format (the text's HELP and TYPE lines; the protobuf
// MetricFamily message without metrics, to which the metrics' encodings are
// appended as the repeated field they are).
type family struct {
	name   string
	header [formats][]byte
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

// familyLines is an org's series of one family, encoded: text lines, or
// the protobuf field entries of its metrics.
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
	f := formatText
	if expfmt.NegotiateAccept(r.Header, expfmt.DefaultAcceptedFormats()...).FormatType() == expfmt.TypeProtoDelim {
		f = formatProto
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Everything that can fail happens before the first byte is written,
	// so that a failure is a 500 and not a cut exposition.
	others, err := h.g.Gather()
	var fams []*family
	if err == nil {
		fams, err = h.orgLines(f, time.Now())
	}
	if err != nil {
		h.logger.Error("error gathering metrics", "err", err)
		h.errors.WithLabelValues("gathering").Inc()
		http.Error(w, "An error has occurred while gathering metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", string(f.expfmt()))
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
	err = h.write(out, f, others, fams)
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

// write writes the exposition in format f: the families of others
// (gathered) and of the orgs' series, merged in name order.
func (h *metricsHandler) write(w io.Writer, f format, others []*dto.MetricFamily, fams []*family) error {
	enc := expfmt.NewEncoder(w, f.expfmt())
	cache := h.caches[f]
	i := 0
	var size []byte
	for _, fam := range fams {
		for ; i < len(others) && others[i].GetName() < fam.name; i++ {
			if err := enc.Encode(others[i]); err != nil {
				return err
			}
		}
		if f == formatProto {
			// One length-delimited MetricFamily: its length first.
			n := len(fam.header[f])
			for _, o := range h.sorted {
				for _, l := range cache[o].lines {
					if l.fam == fam {
						n += len(l.text)
					}
				}
			}
			size = protowire.AppendVarint(size[:0], uint64(n))
			if _, err := w.Write(size); err != nil {
				return err
			}
		}
		if _, err := w.Write(fam.header[f]); err != nil {
			return err
		}
		for _, o := range h.sorted {
			for _, l := range cache[o].lines {
				if l.fam == fam {
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
func (h *metricsHandler) orgLines(f format, now time.Time) ([]*family, error) {
	c := h.c
	cache := h.caches[f]
	h.used[f].Store(true)
	h.pendMu.Lock()
	maps.Copy(cache, h.pending[f])
	clear(h.pending[f])
	h.pendMu.Unlock()
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
		if t := cache[o.Info.Name]; t != nil && t.valid(o, seq, now) {
			continue
		}
		var counts []prometheus.Metric
		c.collectCounts(func(m prometheus.Metric) { counts = append(counts, m) }, o.Info.Name, st)
		todo = append(todo, stale{o: o, seq: seq, counts: counts})
	}
	c.mu.Unlock()

	for _, cache := range h.caches {
		for name := range cache {
			if !listed[name] {
				delete(cache, name)
			}
		}
	}
	h.renderMu.Lock()
	tooMany := len(h.infoDescs) > maxInfoDescs
	if tooMany {
		clear(h.infoDescs)
		clear(h.fams)
		h.pendMu.Lock()
		for _, p := range h.pending {
			clear(p)
		}
		h.pendMu.Unlock()
	}
	h.renderMu.Unlock()
	if tooMany {
		// Label sets of orgs long gone: start afresh.
		for _, cache := range h.caches {
			clear(cache)
		}
		return h.orgLines(f, now)
	}
	h.renderMu.Lock()
	defer h.renderMu.Unlock()
	h.scrapeRenders += len(todo)
	for _, s := range todo {
		t, err := h.render(f, s.o, s.seq, s.counts, now)
		if err != nil {
			return nil, err
		}
		cache[s.o.Info.Name] = t
	}

	h.sorted = h.sorted[:0]
	seen := map[*family]bool{}
	var fams []*family
	for _, o := range orgs {
		h.sorted = append(h.sorted, o.Info.Name)
		for _, l := range cache[o.Info.Name].lines {
			if !seen[l.fam] {
				seen[l.fam] = true
				fams = append(fams, l.fam)
			}
		}
	}
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	return fams, nil
}

// prerender encodes the series of an org whose check just finished, in the
// formats scrapers ask for, so that a scrape (every 30 s, when half the orgs
// of a minute's schedule changed) copies them instead of encoding them. A
// scrape uses them only while they match the org's last result and counts
// (orgText.valid), so a late or out-of-order one is merely wasted.
func (h *metricsHandler) prerender(info checks.Info, r *checks.Result, seq uint64, counts []prometheus.Metric) {
	for f := range formats {
		if !h.used[f].Load() {
			continue
		}
		// Stored under renderMu: a reset of the families (orgLines) drops
		// what was encoded with the old ones.
		h.renderMu.Lock()
		if t, err := h.render(f, checks.OrgState{Info: info, Last: r}, seq, counts, time.Now()); err == nil {
			h.pendMu.Lock()
			h.pending[f][info.Name] = t
			h.pendMu.Unlock()
		} // else the scrape renders it again and reports the error
		h.renderMu.Unlock()
	}
}

// maxInfoDescs bounds the descriptors of tokenwatch_org_info kept for
// label sets seen (one per distinct set of label names).
const maxInfoDescs = 1000

// render (under renderMu) encodes the series of org o in format f: its info, counts (taken
// by the caller under the Collector's lock) and last result.
func (h *metricsHandler) render(f format, o checks.OrgState, seq uint64, counts []prometheus.Metric, now time.Time) (*orgText, error) {
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
		fam, err := h.family(m.Desc(), &d)
		if err != nil {
			return nil, err
		}
		if _, ok := byFam[fam]; !ok {
			order = append(order, fam)
		}
		byFam[fam] = append(byFam[fam], &d)
	}
	var buf bytes.Buffer
	for _, fam := range order {
		ds := byFam[fam]
		slices.SortFunc(ds, compareLabels)
		var b []byte
		switch f {
		case formatProto:
			for _, d := range ds {
				m, err := proto.Marshal(d)
				if err != nil {
					return nil, fmt.Errorf("org %s: %w", o.Info.Name, err)
				}
				b = protowire.AppendTag(b, metricFamilyMetric, protowire.BytesType)
				b = protowire.AppendBytes(b, m)
			}
		default:
			buf.Reset()
			mf := &dto.MetricFamily{Name: &fam.name, Type: metricType(ds[0]).Enum(), Metric: ds}
			if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
				return nil, fmt.Errorf("org %s: %w", o.Info.Name, err)
			}
			_, lines := cutHeader(buf.Bytes())
			b = bytes.Clone(lines)
		}
		t.lines = append(t.lines, familyLines{fam: fam, text: b})
	}
	return t, nil
}

// metricFamilyMetric is the field number of io.prometheus.client.MetricFamily's
// repeated metric field.
const metricFamilyMetric = 4

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
	header, _ := cutHeader(buf.Bytes())
	f := &family{name: name}
	f.header[formatText] = bytes.Clone(header)
	mf.Metric = nil
	pb, err := proto.Marshal(mf)
	if err != nil {
		return nil, err
	}
	f.header[formatProto] = pb
	h.fams[desc] = f
	return f, nil
}

// cutHeader splits a family's text exposition into its comment lines
// (HELP and TYPE) and its samples.
func cutHeader(text []byte) (header, lines []byte) {
	end := 0
	for bytes.HasPrefix(text[end:], []byte("# ")) {
		end += bytes.IndexByte(text[end:], '\n') + 1
	}
	return text[:end], text[end:]
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
