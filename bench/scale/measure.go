package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clkTck is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat: 100 on every Linux architecture Go supports.
const clkTck = 100

// ProcSample is one reading of /proc/PID for a process.
type ProcSample struct {
	T       float64 `json:"t"` // seconds since the launch
	RSS     uint64  `json:"rss_bytes"`
	HWM     uint64  `json:"hwm_bytes"`
	CPU     float64 `json:"cpu_seconds"` // utime + stime
	Threads int     `json:"threads"`
	FDs     int     `json:"fds"`
	Sockets int     `json:"sockets"`
	// Wait is how long the process's threads have waited on a run queue
	// for a CPU (seconds, summed over /proc/PID/task/*/schedstat): CPU
	// contention, from this process's view.
	Wait float64 `json:"runqueue_wait_seconds"`
}

// readProc reads VmRSS, VmHWM, Threads (status), utime+stime (stat) and the
// open descriptors (fd) of pid. withFDs=false skips the descriptor count.
func readProc(pid int, withFDs bool) (ProcSample, error) {
	var s ProcSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSS = n * 1024
		case "VmHWM":
			s.HWM = n * 1024
		case "Threads":
			s.Threads = int(n)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces: fields count from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("unexpected /proc/PID/stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, errors.New("short /proc/PID/stat")
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14
	st, _ := strconv.ParseFloat(f[12], 64) // field 15
	s.CPU = (ut + st) / clkTck
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				continue
			}
			if f := strings.Fields(string(b)); len(f) >= 2 {
				ns, _ := strconv.ParseFloat(f[1], 64)
				s.Wait += ns / 1e9
			}
		}
	}
	if withFDs {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err == nil {
			s.FDs = len(ents)
			for _, e := range ents {
				if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
					s.Sockets++
				}
			}
		}
	}
	return s, nil
}

// machineBusy returns the CPU seconds all cores spent busy since boot
// (everything but idle and iowait, from /proc/stat).
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return math.NaN()
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return math.NaN()
	}
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is counted in user already
			break
		}
		busy += n
	}
	return busy / clkTck
}

// Hist is a classic histogram summed over its label sets (other than le).
type Hist struct {
	LE     []float64 `json:"le"`
	Counts []float64 `json:"counts"` // cumulative, as exposed
	Count  float64   `json:"count"`
	Sum    float64   `json:"sum"`
}

// sub returns h minus an earlier reading of the same histogram.
func (h *Hist) sub(old *Hist) *Hist {
	if old == nil || len(old.LE) != len(h.LE) {
		return h
	}
	d := &Hist{LE: h.LE, Count: h.Count - old.Count, Sum: h.Sum - old.Sum}
	for i := range h.Counts {
		d.Counts = append(d.Counts, h.Counts[i]-old.Counts[i])
	}
	return d
}

// quantile returns the q-quantile interpolated within its bucket, as
// Prometheus' histogram_quantile does, and the bucket's upper bound (+Inf
// when it falls in the last bucket, in which case the value is the largest
// finite bound).
func (h *Hist) quantile(q float64) (v, bound float64, ok bool) {
	if h == nil || len(h.LE) == 0 {
		return 0, 0, false
	}
	total := h.Counts[len(h.Counts)-1]
	if total <= 0 {
		return 0, 0, false
	}
	rank := q * total
	for i, c := range h.Counts {
		if c >= rank {
			if math.IsInf(h.LE[i], 1) {
				if i == 0 {
					return 0, h.LE[i], true
				}
				return h.LE[i-1], h.LE[i], true
			}
			lo, prev := 0.0, 0.0
			if i > 0 {
				lo, prev = h.LE[i-1], h.Counts[i-1]
			}
			if c == prev {
				return h.LE[i], h.LE[i], true
			}
			return lo + (h.LE[i]-lo)*(rank-prev)/(c-prev), h.LE[i], true
		}
	}
	return 0, 0, false
}

// Scrape is one GET /metrics, as Prometheus sends it (text format, gzip),
// and what its body held.
type Scrape struct {
	T    float64 `json:"t"`       // seconds since the launch, at the request
	At   float64 `json:"at_unix"` // Unix time of the request
	Took float64 `json:"took_seconds"`
	// CPU is the daemon's CPU seconds from the request to the last byte:
	// the scrape's cost plus the checks that ran meanwhile.
	CPU  float64 `json:"cpu_seconds"`
	TTFB float64 `json:"ttfb_seconds"`
	Gzip bool    `json:"gzip"`
	// Proto: the protobuf format was asked for (as a Prometheus that
	// prefers it does); such a body is measured, not parsed.
	Proto  bool   `json:"proto,omitempty"`
	Wire   int    `json:"wire_bytes"`
	Body   int    `json:"body_bytes"`
	Status int    `json:"status"`
	Err    string `json:"err,omitempty"`

	Series    int            `json:"series"`
	OrgSeries int            `json:"org_series"` // series with an org label
	Orgs      int            `json:"orgs"`       // distinct org label values
	Families  map[string]int `json:"families"`   // series per metric family (base name)

	Goroutines  float64 `json:"go_goroutines"`
	ChecksTotal float64 `json:"checks_total"` // sum of tokenwatch_checks_total
	// LastRun: orgs with tokenwatch_check_last_run_timestamp_seconds, and its oldest and newest value.
	LastRunN   int     `json:"last_run_n"`
	LastRunMin float64 `json:"last_run_min"`
	LastRunMax float64 `json:"last_run_max"`
	// Hists holds the scheduling histograms found (lateness, queue wait).
	Hists map[string]*Hist `json:"hists,omitempty"`
}

// Histograms read from /metrics, in order of preference for "lateness".
var latenessMetrics = []string{"tokenwatch_check_schedule_lateness_seconds", "tokenwatch_check_queue_wait_seconds"}

const (
	acceptText  = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
	acceptProto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
)

// scrapeMetrics fetches /metrics with the headers of a Prometheus scrape in
// the text format (gzip accepted, unless gz is false) and parses the body. The time is until the
// last byte of the (compressed) body arrived; parsing is not timed.
func scrapeMetrics(ctx context.Context, c *http.Client, base string, launch time.Time, gz, proto bool) Scrape {
	start := time.Now()
	s := Scrape{T: start.Sub(launch).Seconds(), At: unixF(start), Gzip: gz, Proto: proto}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Accept", acceptText)
	if proto {
		req.Header.Set("Accept", acceptProto)
	}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "60")
	resp, err := c.Do(req)
	if err != nil {
		s.Err = err.Error()
		s.Took = time.Since(start).Seconds()
		return s
	}
	s.TTFB = time.Since(start).Seconds()
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.Took = time.Since(start).Seconds()
	s.Status = resp.StatusCode
	s.Wire = len(raw)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	var body io.Reader = bytes.NewReader(raw)
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			s.Err = err.Error()
			return s
		}
		body = zr
	}
	if proto {
		n, _ := io.Copy(io.Discard, body)
		s.Body = int(n)
		return s
	}
	parseMetrics(body, &s)
	return s
}

// parseMetrics reads a text-format body line by line.
func parseMetrics(r io.Reader, s *Scrape) {
	cr := &countingReader{r: r}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	s.Families = map[string]int{}
	orgs := map[string]struct{}{}
	hists := map[string]map[float64]float64{}
	s.Hists = map[string]*Hist{}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		s.Series++
		name, labels, value := splitSample(line)
		s.Families[family(name)]++
		if org, ok := labelValue(labels, "org"); ok {
			s.OrgSeries++
			if _, seen := orgs[org]; !seen {
				orgs[org] = struct{}{}
			}
		}
		switch name {
		case "go_goroutines":
			s.Goroutines = parseFloat(value)
		case "tokenwatch_checks_total":
			s.ChecksTotal += parseFloat(value)
		case "tokenwatch_check_last_run_timestamp_seconds":
			v := parseFloat(value)
			if s.LastRunN == 0 || v < s.LastRunMin {
				s.LastRunMin = v
			}
			s.LastRunMax = max(s.LastRunMax, v)
			s.LastRunN++
		}
		for _, h := range latenessMetrics {
			if !strings.HasPrefix(name, h) {
				continue
			}
			switch name[len(h):] {
			case "_bucket":
				le, ok := labelValue(labels, "le")
				if !ok {
					continue
				}
				b := parseFloat([]byte(le))
				if hists[h] == nil {
					hists[h] = map[float64]float64{}
				}
				hists[h][b] += parseFloat(value)
			case "_count":
				s.hist(h).Count += parseFloat(value)
			case "_sum":
				s.hist(h).Sum += parseFloat(value)
			}
		}
	}
	if err := sc.Err(); err != nil && s.Err == "" {
		s.Err = "reading the body: " + err.Error()
	}
	s.Body = cr.n
	s.Orgs = len(orgs)
	for h, m := range hists {
		hh := s.hist(h)
		for le := range m {
			hh.LE = append(hh.LE, le)
		}
		slices.Sort(hh.LE)
		for _, le := range hh.LE {
			hh.Counts = append(hh.Counts, m[le])
		}
	}
}

func (s *Scrape) hist(name string) *Hist {
	if s.Hists[name] == nil {
		s.Hists[name] = &Hist{}
	}
	return s.Hists[name]
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// splitSample splits `name{labels} value [ts]`.
func splitSample(line []byte) (name string, labels, value []byte) {
	i := bytes.IndexAny(line, "{ ")
	if i < 0 {
		return string(line), nil, nil
	}
	name = string(line[:i])
	rest := line[i:]
	if rest[0] == '{' {
		j := bytes.LastIndexByte(rest, '}')
		if j < 0 {
			return name, nil, nil
		}
		labels, rest = rest[1:j], rest[j+1:]
	}
	f := bytes.Fields(rest)
	if len(f) > 0 {
		value = f[0]
	}
	return name, labels, value
}

// labelValue finds name="value" in a label list (values without escapes).
func labelValue(labels []byte, name string) (string, bool) {
	for len(labels) > 0 {
		eq := bytes.IndexByte(labels, '=')
		if eq < 0 || eq+1 >= len(labels) || labels[eq+1] != '"' {
			return "", false
		}
		k := bytes.TrimSpace(labels[:eq])
		rest := labels[eq+2:]
		end := 0
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end > len(rest) {
			end = len(rest)
		}
		if string(k) == name {
			return string(rest[:end]), true
		}
		if end+1 >= len(rest) {
			return "", false
		}
		labels = bytes.TrimLeft(rest[end+1:], ", ")
	}
	return "", false
}

// family strips the suffixes of histogram and summary samples.
func family(name string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			return b
		}
	}
	return name
}

func parseFloat(b []byte) float64 {
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func unixF(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ServerStats is fakeoauth's /stats answer (see bench/scale/fakeoauth).
type ServerStats struct {
	Now            float64            `json:"now"`
	Requests       map[string]int64   `json:"requests"`
	Errors         map[string]int64   `json:"errors"`
	HandledMedian  map[string]float64 `json:"handled_median_seconds"`
	Conns          int64              `json:"conns"`
	MaxConns       int64              `json:"max_conns"`
	Clients        int                `json:"clients"`
	ClientsChecked int                `json:"clients_checked"`
	FirstCheck     float64            `json:"first_check"`
	LastFirstCheck float64            `json:"last_first_check"`
	Staleness      float64            `json:"staleness_seconds"`
	Intervals      struct {
		N   int     `json:"n"`
		Min float64 `json:"min"`
		P01 float64 `json:"p01"`
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"intervals"`
	TokensMin int `json:"tokens_min"`
	TokensMax int `json:"tokens_max"`
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Seconds decodes a duration given as seconds (a number) or as a Go
// duration string, so the program keeps reading /api/v1/orgs if its shape
// changes a little.
type Seconds float64

func (s *Seconds) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		if d, err := time.ParseDuration(str); err == nil {
			*s = Seconds(d.Seconds())
			return nil
		}
		f, err := strconv.ParseFloat(str, 64)
		*s = Seconds(f)
		return err
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Seconds(f)
	return nil
}

// APIOrg is the part of an /api/v1/orgs entry the benchmark reads.
type APIOrg struct {
	Name string `json:"name"`
	Last *struct {
		Start    time.Time `json:"start"`
		Duration Seconds   `json:"duration_seconds"`
		Outcome  string    `json:"outcome"`
		Loaded   bool      `json:"loaded"`
		Steps    []struct {
			Step     string  `json:"step"`
			Duration Seconds `json:"duration_seconds"`
			Skipped  bool    `json:"skipped"`
			Outcome  string  `json:"outcome"`
			Phases   map[string]Seconds
		} `json:"steps"`
	} `json:"last"`
}

func fetchOrgs(ctx context.Context, c *http.Client, base string) ([]APIOrg, error) {
	var doc struct {
		Orgs []APIOrg `json:"orgs"`
	}
	err := getJSON(ctx, c, base+"/api/v1/orgs", &doc)
	return doc.Orgs, err
}

// JSON has no NaN or infinities, which the figures use (NaN: not measured;
// +Inf: a histogram's last bucket). encodeSpecial replaces them in place by
// sentinels before marshalling, decodeSpecial restores them after reading.
const (
	sentinelNaN    = -1.5e300
	sentinelPosInf = 1e300
	sentinelNegInf = -1e300
)

func encodeSpecial(v any) { walkFloats(reflect.ValueOf(v), toSentinel) }
func decodeSpecial(v any) { walkFloats(reflect.ValueOf(v), fromSentinel) }

func toSentinel(f float64) float64 {
	switch {
	case math.IsNaN(f):
		return sentinelNaN
	case math.IsInf(f, 1):
		return sentinelPosInf
	case math.IsInf(f, -1):
		return sentinelNegInf
	}
	return f
}

func fromSentinel(f float64) float64 {
	switch f {
	case sentinelNaN:
		return math.NaN()
	case sentinelPosInf:
		return math.Inf(1)
	case sentinelNegInf:
		return math.Inf(-1)
	}
	return f
}

func walkFloats(v reflect.Value, f func(float64) float64) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkFloats(v.Elem(), f)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walkFloats(v.Field(i), f)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walkFloats(v.Index(i), f)
		}
	case reflect.Map:
		if v.Type().Elem().Kind() == reflect.Float64 {
			for _, k := range v.MapKeys() {
				v.SetMapIndex(k, reflect.ValueOf(f(v.MapIndex(k).Float())).Convert(v.Type().Elem()))
			}
			return
		}
		for _, k := range v.MapKeys() {
			walkFloats(v.MapIndex(k), f)
		}
	case reflect.Float64:
		if v.CanSet() {
			v.SetFloat(f(v.Float()))
		}
	}
}
