package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

const benchSecret = "bench-secret"

// RunConfig is one launch of the daemon (or of its replicas) against one fake server.
type RunConfig struct {
	Label    string        `json:"label"`
	Orgs     int           `json:"orgs"`
	Shards   int           `json:"shards"`   // replicas with --shard=i/N; 0 or 1: one daemon
	Duration time.Duration `json:"duration"` // measured from the launch
	// MinSteady extends the run so that at least this much follows the
	// moment every org was checked once.
	MinSteady     time.Duration `json:"min_steady"`
	Latency       time.Duration `json:"latency"` // injected on every endpoint
	Sample        time.Duration `json:"sample"`  // /proc sampling period
	Scrape        time.Duration `json:"scrape"`  // /metrics scrape period
	Reloads       int           `json:"reloads"` // POST /-/reload after changing one org, after the steady window
	MaxConcurrent int           `json:"max_concurrent_checks"`
	CollectSteps  bool          `json:"collect_steps"` // gather per-step durations (accuracy)
}

type env struct {
	tokenwatch, fake string
	work             string
}

type replica struct {
	idx     int
	shard   string
	proc    *proc
	base    string
	launch  time.Time
	mu      sync.Mutex
	up      float64 // seconds from launch to /-/healthy answering; -1: never
	ready   float64
	samples []ProcSample
	scrapes []Scrape
	results map[string]result // org+start -> steps, for accuracy
}

type result struct {
	start  time.Time
	steps  map[string]float64
	phases map[string]map[string]float64 // step -> phase -> seconds
}

// ReplicaSummary holds the figures of one daemon over a run.
type ReplicaSummary struct {
	Index      int     `json:"index"`
	Shard      string  `json:"shard,omitempty"`
	ListenerUp float64 `json:"listener_up_seconds"`
	Ready      float64 `json:"ready_seconds"`
	// Listed orgs in /api/v1/orgs, and those with a result of this run.
	Listed   int            `json:"listed"`
	Checked  int            `json:"checked"`
	Outcomes map[string]int `json:"outcomes"`

	RSSMin, RSSMed, RSSMax uint64
	HWMSteady, HWMEnd      uint64
	CPUStartup             float64 // CPU seconds from the launch until every org was checked once
	CPUSteady              float64 // cores, mean over the steady window
	CPUSteadyMax           float64 // cores, the busiest ~10 s of the steady window
	WaitSteady             float64 // cores' worth of run-queue waiting over the steady window: CPU contention
	ThreadsMax             int
	FDsMed, FDsMax         int
	SocketsMed, SocketsMax int
	GoroutinesMed          float64
	GoroutinesMax          float64

	Scrapes          int     `json:"scrapes"`
	ScrapeErrors     int     `json:"scrape_errors"`
	MetricsMin       float64 `json:"metrics_min_seconds"`
	MetricsMed       float64 `json:"metrics_med_seconds"`
	MetricsMax       float64 `json:"metrics_max_seconds"`
	MetricsCPUMed    float64 `json:"metrics_cpu_med_seconds"`   // the daemon's CPU during a gzip scrape
	MetricsPlainMed  float64 `json:"metrics_plain_med_seconds"` // without gzip
	MetricsPlainMax  float64 `json:"metrics_plain_max_seconds"`
	MetricsProtoMed  float64 `json:"metrics_proto_med_seconds"` // protobuf, gzip
	MetricsProtoMax  float64 `json:"metrics_proto_max_seconds"`
	MetricsProtoBody int     `json:"metrics_proto_body_bytes"`
	MetricsProtoWire int     `json:"metrics_proto_wire_bytes"`
	MetricsBody      int     `json:"metrics_body_bytes"`
	MetricsWire      int     `json:"metrics_wire_bytes"`
	Series           int     `json:"series"`
	OrgSeries        int     `json:"org_series"`
	MetricOrgs       int     `json:"metric_orgs"`
	SeriesPerOrg     float64 `json:"series_per_org"`
	OrgSeriesPerOrg  float64 `json:"org_series_per_org"`
	TopFamilies      []string
	StalenessMax     float64 `json:"staleness_max_seconds"`
	LastRunN         int     `json:"last_run_n"`
	LatenessMetric   string  `json:"lateness_metric"`
	LatenessP99All   float64 `json:"lateness_p99_all"`
	LatenessBoundAll float64 `json:"lateness_p99_all_bucket"`
	LatenessP99Sty   float64 `json:"lateness_p99_steady"`
	LatenessBoundSty float64 `json:"lateness_p99_steady_bucket"`
	LatenessCount    float64 `json:"lateness_count"`
	LatenessMaxLE    float64 `json:"lateness_all_max_bucket"` // the smallest bound holding every observation
	ChecksPerMin     float64 `json:"checks_per_minute"`       // tokenwatch_checks_total over the steady window
}

// ReloadResult is one POST /-/reload after changing one org in the file.
type ReloadResult struct {
	Org        string  `json:"org"`
	Took       float64 `json:"took_seconds"`
	Status     int     `json:"status"`
	Answer     string  `json:"answer"`
	CPU        float64 `json:"cpu_seconds"`
	Checks     int64   `json:"checks_during"` // finished checks (server view) during the request
	RateDuring float64 `json:"rate_during"`   // finished checks per second
	RateBefore float64 `json:"rate_before"`   // in the 3 s before
	LongestGap float64 `json:"longest_gap_seconds"`
}

// StepAccuracy is reported minus injected, per step, at the median.
type StepAccuracy struct {
	Step         string  `json:"step"`
	N            int     `json:"n"`
	Median       float64 `json:"median_seconds"`
	P10, P90     float64
	MedianExcess float64 `json:"median_excess_seconds"` // median - injected
	ServerMedian float64 `json:"server_median_seconds"` // the server's own handling time
	// Phases are the medians of the httptrace phases (resolve, connect, tls, processing, transfer).
	Phases map[string]float64 `json:"phases_median_seconds"`
	// NewConnShare is the share of steps that opened a connection
	// (connect > 0), and NewConnMedian their median connect time.
	NewConnShare  float64 `json:"new_connection_share"`
	NewConnMedian float64 `json:"new_connection_connect_median_seconds"`
}

// ShardCheck verifies that every org was checked by exactly one replica.
type ShardCheck struct {
	PerReplica []int `json:"per_replica"`
	Union      int   `json:"union"`
	Duplicates int   `json:"duplicates"`
	Missing    int   `json:"missing"`
	// From the server: fewest and most token requests per client, and the
	// shortest interval between two checks of one org.
	MinInterval float64 `json:"min_interval_seconds"`
	OK          bool    `json:"ok"`
}

// RunResult is everything one run measured.
type RunResult struct {
	Config      RunConfig        `json:"config"`
	Machine     string           `json:"machine"`
	Start       time.Time        `json:"start"`
	AllChecked  float64          `json:"all_checked_seconds"` // from the launch, server view; -1: not within the run
	SteadyFrom  float64          `json:"steady_from"`
	SteadyTo    float64          `json:"steady_to"`
	Replicas    []ReplicaSummary `json:"replicas"`
	Server      ServerStats      `json:"server"`
	StaleMaxSrv float64          `json:"server_staleness_max_seconds"`
	// MachineCPU is the whole machine's busy cores over the steady window;
	// Others what is left after the daemon(s), the fake server and this
	// program: other work on a shared machine.
	MachineCPU float64        `json:"machine_cpu_cores"`
	Others     float64        `json:"others_cpu_cores"`
	FakeCPU    float64        `json:"fake_cpu_cores"`
	FakeRSS    uint64         `json:"fake_rss_bytes"`
	BenchCPU   float64        `json:"bench_cpu_cores"`
	Reloads    []ReloadResult `json:"reloads,omitempty"`
	Accuracy   []StepAccuracy `json:"accuracy,omitempty"`
	Shard      *ShardCheck    `json:"shard_check,omitempty"`
	Errors     []string       `json:"errors,omitempty"`
	Raw        []rawReplica   `json:"raw"`
}

type rawReplica struct {
	Samples []ProcSample `json:"samples"`
	Scrapes []Scrape     `json:"scrapes"`
}

func orgName(i int) string { return fmt.Sprintf("org-%05d", i) }

// writeConfig writes the daemon's configuration: n generic client-credentials
// orgs, each with its own client id, on @every 1m. scopes changes the scope
// of some orgs (the reload test).
func writeConfig(path, url string, rc RunConfig, scopes map[int]string) error {
	var b strings.Builder
	b.WriteString("# written by bench/scale\nglobal:\n  schedule: \"@every 1m\"\n  login_budget: 100000\n")
	if rc.MaxConcurrent > 0 {
		fmt.Fprintf(&b, "  max_concurrent_checks: %d\n", rc.MaxConcurrent)
	}
	b.WriteString("orgs:\n")
	for i := range rc.Orgs {
		fmt.Fprintf(&b, `  - name: %s
    provider: generic
    token_url: %[2]s/token
    introspection_url: %[2]s/introspect
    userinfo_url: %[2]s/userinfo
    revocation_url: %[2]s/revoke
    client: {id: bench-client-%05[3]d, secret: %s}
`, orgName(i), url, i, benchSecret)
		if s, ok := scopes[i]; ok {
			fmt.Fprintf(&b, "    grant: {type: client_credentials, scope: %s}\n", s)
		} else {
			b.WriteString("    grant: {type: client_credentials}\n")
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// doRun launches the fake server and the daemon(s), measures, and stops them.
func doRun(ctx context.Context, e *env, rc RunConfig) (*RunResult, error) {
	if rc.Shards < 1 {
		rc.Shards = 1
	}
	dir := filepath.Join(e.work, rc.Label)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	res := &RunResult{Config: rc, Start: time.Now(), AllChecked: -1}
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}}
	quick := &http.Client{Timeout: time.Second}

	fake, err := startFake(e.fake, dir, rc.Latency)
	if err != nil {
		return nil, err
	}
	defer fake.stop(5 * time.Second)
	cfg := filepath.Join(dir, "tokenwatch.yml")
	if err := writeConfig(cfg, fake.url, rc, nil); err != nil {
		return nil, err
	}
	log.Printf("%s: %d orgs, %d replica(s), latency %s, fake server %s", rc.Label, rc.Orgs, rc.Shards, rc.Latency, fake.url)

	reps := make([]*replica, rc.Shards)
	for i := range reps {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		r := &replica{idx: i, base: fmt.Sprintf("http://127.0.0.1:%d", port), up: -1, ready: -1, results: map[string]result{}}
		args := []string{"run", "--config.file=" + cfg, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
			"--storage.path=" + filepath.Join(dir, fmt.Sprintf("data-%d", i))}
		if rc.Shards > 1 {
			r.shard = fmt.Sprintf("%d/%d", i, rc.Shards)
			args = append(args, "--shard="+r.shard)
		}
		r.launch = time.Now()
		r.proc, err = startProc(fmt.Sprintf("tokenwatch-%d", i), filepath.Join(dir, fmt.Sprintf("tokenwatch-%d.log", i)), nil, e.tokenwatch, args...)
		if err != nil {
			return nil, err
		}
		defer r.proc.stop(40 * time.Second)
		reps[i] = r
	}
	launch := reps[0].launch
	end := launch.Add(rc.Duration)
	hardEnd := end.Add(rc.MinSteady + 2*time.Minute)
	mctx, stopMeasuring := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Scrapes stop between two requests, never in the middle of one.
	stopScraping := make(chan struct{})
	scraping := func() bool {
		select {
		case <-stopScraping:
			return false
		default:
			return ctx.Err() == nil
		}
	}

	// The listener: /-/healthy polled every 5 ms from the launch; then /-/ready.
	for _, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// When path first answers 200, in seconds since the launch.
			waitOK := func(path string, every time.Duration, at *float64) bool {
				for mctx.Err() == nil && !r.proc.exited() {
					resp, err := quick.Get(r.base + path)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							r.mu.Lock()
							*at = time.Since(r.launch).Seconds()
							r.mu.Unlock()
							return true
						}
					}
					time.Sleep(every)
				}
				return false
			}
			if waitOK("/-/healthy", 5*time.Millisecond, &r.up) {
				waitOK("/-/ready", 20*time.Millisecond, &r.ready)
			}
		}()
	}
	// /proc of every daemon, of the fake server and of this program.
	var fakeSamples, selfSamples []ProcSample
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(rc.Sample)
		defer tick.Stop()
		for {
			for _, r := range reps {
				if s, err := readProc(r.proc.pid(), true); err == nil {
					s.T = time.Since(launch).Seconds()
					r.mu.Lock()
					r.samples = append(r.samples, s)
					r.mu.Unlock()
				}
			}
			if s, err := readProc(fake.pid(), false); err == nil {
				s.T = time.Since(launch).Seconds()
				fakeSamples = append(fakeSamples, s)
			}
			if s, err := readProc(os.Getpid(), false); err == nil {
				s.T = time.Since(launch).Seconds()
				selfSamples = append(selfSamples, s)
			}
			select {
			case <-mctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	// /metrics of every daemon, as Prometheus would scrape it.
	for _, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for mctx.Err() == nil {
				r.mu.Lock()
				up := r.up >= 0
				r.mu.Unlock()
				if up {
					break
				}
				if r.proc.exited() {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			next := time.Now()
			for scraping() && !r.proc.exited() {
				// In turn: text with gzip (as Prometheus by default),
				// text without (the cost of the exposition alone), and
				// protobuf with gzip (as a Prometheus told to prefer it).
				before, _ := readProc(r.proc.pid(), false)
				kind := len(r.scrapes) % 3
				s := scrapeMetrics(ctx, client, r.base, r.launch, kind != 1, kind == 2)
				if after, err := readProc(r.proc.pid(), false); err == nil {
					s.CPU = after.CPU - before.CPU
				}
				if ctx.Err() != nil {
					return
				}
				r.mu.Lock()
				r.scrapes = append(r.scrapes, s)
				r.mu.Unlock()
				if rc.CollectSteps && rc.Orgs <= 1000 {
					collectSteps(ctx, client, r)
				}
				next = next.Add(rc.Scrape)
				if d := time.Until(next); d > 0 {
					select {
					case <-stopScraping:
						return
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
			}
		}()
	}

	// Every org checked once, by the server's count of clients that
	// finished a check (revoked); then the steady window.
	var steadyFrom time.Time
	for ctx.Err() == nil && time.Now().Before(end) {
		st, err := fake.stats(ctx, client, 0)
		if err == nil && st.ClientsChecked >= rc.Orgs {
			steadyFrom = time.Unix(0, int64(st.LastFirstCheck*1e9))
			res.AllChecked = steadyFrom.Sub(launch).Seconds()
			break
		}
		for _, r := range reps {
			if r.proc.exited() {
				close(stopScraping)
				stopMeasuring()
				wg.Wait()
				return nil, fmt.Errorf("tokenwatch %d exited: %w\n%s", r.idx, r.proc.err, tail(r.proc.log, 20))
			}
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
	if steadyFrom.IsZero() {
		res.Errors = append(res.Errors, fmt.Sprintf("not every org was checked within %s of the launch", rc.Duration))
		steadyFrom = end
	} else {
		log.Printf("%s: every org checked once %.1fs after the launch", rc.Label, res.AllChecked)
		if e := steadyFrom.Add(rc.MinSteady); e.After(end) {
			end = e
		}
	}
	if end.After(hardEnd) {
		end = hardEnd
	}
	// The server's view of staleness through the steady window.
	busy0, busyT0 := machineBusy(), time.Now()
	for ctx.Err() == nil && time.Now().Before(end) {
		if st, err := fake.stats(ctx, client, 0); err == nil && time.Now().After(steadyFrom.Add(5*time.Second)) {
			res.StaleMaxSrv = max(res.StaleMaxSrv, st.Staleness)
		}
		sleepCtx(ctx, min(rc.Scrape, time.Until(end)))
	}
	close(stopScraping)
	if ctx.Err() != nil {
		stopMeasuring()
		wg.Wait()
		return nil, ctx.Err()
	}
	res.MachineCPU = (machineBusy() - busy0) / time.Since(busyT0).Seconds()
	stopMeasuring()
	wg.Wait()
	res.SteadyFrom = steadyFrom.Sub(launch).Seconds()
	res.SteadyTo = time.Since(launch).Seconds()
	// Intervals count from a minute after every org was checked once, so
	// that the run at start and the first scheduled run of an org (closer
	// than an interval by design) are left out.
	if st, err := fake.stats(ctx, client, unixF(steadyFrom.Add(65*time.Second))); err == nil {
		res.Server = st
	} else {
		res.Errors = append(res.Errors, "fake server stats: "+err.Error())
	}
	// The orgs each replica checked, their outcomes and step durations.
	checkedBy := map[string]int{}
	for _, r := range reps {
		sum := summarize(r, res.SteadyFrom, res.SteadyTo, res.AllChecked)
		orgs, err := fetchOrgs(ctx, client, r.base)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("replica %d /api/v1/orgs: %v", r.idx, err))
		}
		sum.Listed = len(orgs)
		sum.Outcomes = map[string]int{}
		for _, o := range orgs {
			if o.Last == nil || o.Last.Loaded || o.Last.Start.Before(r.launch) {
				continue
			}
			sum.Checked++
			sum.Outcomes[o.Last.Outcome]++
			checkedBy[o.Name]++
		}
		if rc.CollectSteps {
			addResults(r, orgs)
		}
		res.Replicas = append(res.Replicas, sum)
		res.Raw = append(res.Raw, rawReplica{Samples: r.samples, Scrapes: stripFamilies(r.scrapes)})
	}
	res.FakeCPU = coresBetween(fakeSamples, res.SteadyFrom, res.SteadyTo)
	res.BenchCPU = coresBetween(selfSamples, res.SteadyFrom, res.SteadyTo)
	res.Others = res.MachineCPU - res.FakeCPU - res.BenchCPU
	for _, s := range res.Replicas {
		res.Others -= s.CPUSteady
	}
	if len(fakeSamples) > 0 {
		res.FakeRSS = fakeSamples[len(fakeSamples)-1].RSS
	}
	if rc.Shards > 1 {
		sc := &ShardCheck{Union: len(checkedBy), MinInterval: res.Server.Intervals.Min}
		for _, s := range res.Replicas {
			sc.PerReplica = append(sc.PerReplica, s.Checked)
		}
		for _, n := range checkedBy {
			if n > 1 {
				sc.Duplicates++
			}
		}
		sc.Missing = rc.Orgs - len(checkedBy)
		sc.OK = sc.Duplicates == 0 && sc.Missing == 0 && (res.Server.Intervals.N == 0 || sc.MinInterval > 30)
		res.Shard = sc
	}
	if rc.CollectSteps {
		res.Accuracy = accuracy(reps, steadyFrom, rc.Latency, res.Server)
	}
	// Reloads, after the steady window so they do not disturb its figures.
	if rc.Reloads > 0 && rc.Shards == 1 {
		scopes := map[int]string{}
		for k := range rc.Reloads {
			if !sleepCtx(ctx, 10*time.Second) {
				return nil, ctx.Err()
			}
			i := (k*7919 + 1) % rc.Orgs
			scopes[i] = fmt.Sprintf("reload-%d", k+1)
			if err := writeConfig(cfg, fake.url, rc, scopes); err != nil {
				return nil, err
			}
			rr := measureReload(ctx, client, reps[0], fake)
			rr.Org = orgName(i)
			log.Printf("%s: reload %d took %.3fs (status %d), %d checks finished meanwhile, longest gap %.3fs",
				rc.Label, k+1, rr.Took, rr.Status, rr.Checks, rr.LongestGap)
			res.Reloads = append(res.Reloads, rr)
		}
	}
	for _, r := range reps {
		if r.proc.exited() {
			res.Errors = append(res.Errors, fmt.Sprintf("tokenwatch %d exited during the run: %v", r.idx, r.proc.err))
		}
		r.proc.stop(40 * time.Second)
	}
	if n := countLines(reps[0].proc.log, "level=ERROR"); n > 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("%d error lines in the log of tokenwatch 0, e.g.: %s", n, firstLine(reps[0].proc.log, "level=ERROR")))
	}
	return res, nil
}

func stripFamilies(ss []Scrape) []Scrape {
	out := slices.Clone(ss)
	for i := range out {
		if i != len(out)-1 {
			out[i].Families = nil
		}
	}
	return out
}

func countLines(path, sub string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), sub)
}

func firstLine(path, sub string) string {
	b, _ := os.ReadFile(path)
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(l, sub) {
			if len(l) > 300 {
				l = l[:300] + "..."
			}
			return l
		}
	}
	return ""
}

func collectSteps(ctx context.Context, c *http.Client, r *replica) {
	orgs, err := fetchOrgs(ctx, c, r.base)
	if err != nil {
		return
	}
	addResults(r, orgs)
}

func addResults(r *replica, orgs []APIOrg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range orgs {
		if o.Last == nil || o.Last.Loaded {
			continue
		}
		key := o.Name + "@" + o.Last.Start.String()
		if _, ok := r.results[key]; ok {
			continue
		}
		steps := map[string]float64{}
		phases := map[string]map[string]float64{}
		for _, s := range o.Last.Steps {
			if !s.Skipped {
				steps[s.Step] = float64(s.Duration)
				phases[s.Step] = map[string]float64{}
				for k, v := range s.Phases {
					phases[s.Step][strings.TrimSuffix(k, "_seconds")] = float64(v)
				}
			}
		}
		r.results[key] = result{start: o.Last.Start, steps: steps, phases: phases}
	}
}

func accuracy(reps []*replica, from time.Time, injected time.Duration, st ServerStats) []StepAccuracy {
	by := map[string][]float64{}
	ph := map[string]map[string][]float64{}
	for _, r := range reps {
		for _, res := range r.results {
			if res.start.Before(from) {
				continue
			}
			for step, d := range res.steps {
				by[step] = append(by[step], d)
				by["all"] = append(by["all"], d)
				if ph[step] == nil {
					ph[step] = map[string][]float64{}
				}
				for k, v := range res.phases[step] {
					ph[step][k] = append(ph[step][k], v)
				}
			}
		}
	}
	var out []StepAccuracy
	endpoint := map[string]string{"token": "token", "introspect": "introspect", "probe": "userinfo", "revoke": "revoke"}
	for _, step := range []string{"token", "introspect", "probe", "revoke", "all"} {
		v := by[step]
		if len(v) == 0 {
			continue
		}
		sort.Float64s(v)
		a := StepAccuracy{Step: step, N: len(v), Median: quantile(v, 0.5), P10: quantile(v, 0.1), P90: quantile(v, 0.9)}
		a.MedianExcess = a.Median - injected.Seconds()
		if ep, ok := endpoint[step]; ok {
			a.ServerMedian = st.HandledMedian[ep]
		}
		a.Phases = map[string]float64{}
		for k, vs := range ph[step] {
			sort.Float64s(vs)
			a.Phases[k] = quantile(vs, 0.5)
			if k == "connect" {
				var fresh []float64
				for _, v := range vs {
					if v > 0 {
						fresh = append(fresh, v)
					}
				}
				a.NewConnShare = float64(len(fresh)) / float64(len(vs))
				a.NewConnMedian = quantile(fresh, 0.5)
			}
		}
		out = append(out, a)
	}
	return out
}

// quantile of sorted values (nearest rank, interpolated).
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(v)-1)
	i := int(pos)
	if i+1 >= len(v) {
		return v[len(v)-1]
	}
	return v[i] + (v[i+1]-v[i])*(pos-float64(i))
}

// coresBetween is the mean CPU use (cores) between two times since the launch.
func coresBetween(s []ProcSample, from, to float64) float64 {
	a, b := -1, -1
	for i, x := range s {
		if a < 0 && x.T >= from {
			a = i
		}
		if x.T <= to {
			b = i
		}
	}
	if a < 0 || b <= a {
		return math.NaN()
	}
	return (s[b].CPU - s[a].CPU) / (s[b].T - s[a].T)
}

func summarize(r *replica, from, to, allChecked float64) ReplicaSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	nan := math.NaN()
	s := ReplicaSummary{Index: r.idx, Shard: r.shard, ListenerUp: r.up, Ready: r.ready, LatenessP99All: nan, LatenessP99Sty: nan,
		MetricsMin: nan, MetricsMed: nan, MetricsMax: nan, MetricsCPUMed: nan, MetricsPlainMed: nan, MetricsPlainMax: nan}
	var rss []uint64
	var fds, socks []int
	var steady []ProcSample
	for _, x := range r.samples {
		s.ThreadsMax = max(s.ThreadsMax, x.Threads)
		if x.T >= from && x.T <= to {
			steady = append(steady, x)
			rss = append(rss, x.RSS)
			fds = append(fds, x.FDs)
			socks = append(socks, x.Sockets)
			s.HWMSteady = x.HWM
		}
		s.HWMEnd = x.HWM
		if allChecked >= 0 && x.T <= allChecked {
			s.CPUStartup = x.CPU
		}
	}
	if allChecked >= 0 {
		// Interpolate to the moment every org was checked.
		for i := 1; i < len(r.samples); i++ {
			a, b := r.samples[i-1], r.samples[i]
			if a.T <= allChecked && b.T >= allChecked && b.T > a.T {
				s.CPUStartup = a.CPU + (b.CPU-a.CPU)*(allChecked-a.T)/(b.T-a.T)
			}
		}
	}
	if len(rss) > 0 {
		slices.Sort(rss)
		slices.Sort(fds)
		slices.Sort(socks)
		s.RSSMin, s.RSSMed, s.RSSMax = rss[0], rss[len(rss)/2], rss[len(rss)-1]
		s.FDsMed, s.FDsMax = fds[len(fds)/2], fds[len(fds)-1]
		s.SocketsMed, s.SocketsMax = socks[len(socks)/2], socks[len(socks)-1]
	}
	s.CPUSteady = coresBetween(r.samples, from, to)
	waits := make([]ProcSample, len(r.samples))
	for i, x := range r.samples {
		waits[i] = ProcSample{T: x.T, CPU: x.Wait}
	}
	s.WaitSteady = coresBetween(waits, from, to)
	// The busiest window of about 10 s.
	for i := range steady {
		for j := i + 1; j < len(steady); j++ {
			if steady[j].T-steady[i].T >= 9.5 {
				s.CPUSteadyMax = max(s.CPUSteadyMax, (steady[j].CPU-steady[i].CPU)/(steady[j].T-steady[i].T))
				break
			}
		}
	}
	var took, gor, plain, scpu, protos []float64
	var firstSteady, lastSteady *Scrape
	for i := range r.scrapes {
		sc := &r.scrapes[i]
		s.Scrapes++
		if sc.Err != "" || sc.Status != http.StatusOK {
			s.ScrapeErrors++
			continue
		}
		if sc.T < from || sc.T > to {
			continue
		}
		if sc.Proto {
			protos = append(protos, sc.Took)
			s.MetricsProtoBody, s.MetricsProtoWire = sc.Body, sc.Wire
			continue
		}
		if firstSteady == nil {
			firstSteady = sc
		}
		lastSteady = sc
		gor = append(gor, sc.Goroutines)
		if sc.LastRunN > 0 {
			s.StalenessMax = max(s.StalenessMax, sc.At+sc.TTFB-sc.LastRunMin)
		}
		if sc.Gzip {
			took = append(took, sc.Took)
			scpu = append(scpu, sc.CPU)
		} else {
			plain = append(plain, sc.Took)
		}
	}
	if len(took) > 0 {
		sort.Float64s(took)
		s.MetricsMin, s.MetricsMed, s.MetricsMax = took[0], took[len(took)/2], took[len(took)-1]
		sort.Float64s(scpu)
		s.MetricsCPUMed = scpu[len(scpu)/2]
	}
	if len(gor) > 0 {
		sort.Float64s(gor)
		s.GoroutinesMed, s.GoroutinesMax = gor[len(gor)/2], gor[len(gor)-1]
	}
	if len(protos) > 0 {
		sort.Float64s(protos)
		s.MetricsProtoMed, s.MetricsProtoMax = protos[len(protos)/2], protos[len(protos)-1]
	}
	if len(plain) > 0 {
		sort.Float64s(plain)
		s.MetricsPlainMed, s.MetricsPlainMax = plain[len(plain)/2], plain[len(plain)-1]
	}
	for i := len(r.scrapes) - 1; lastSteady == nil && i >= 0; i-- {
		if !r.scrapes[i].Proto {
			lastSteady = &r.scrapes[i]
		}
	}
	if lastSteady != nil {
		l := lastSteady
		for i := len(r.scrapes) - 1; i >= 0; i-- {
			if sc := r.scrapes[i]; sc.Gzip && !sc.Proto && sc.Err == "" && sc.Status == http.StatusOK {
				s.MetricsWire = sc.Wire
				break
			}
		}
		s.MetricsBody, _, s.Series, s.OrgSeries, s.MetricOrgs, s.LastRunN = l.Body, l.Wire, l.Series, l.OrgSeries, l.Orgs, l.LastRunN
		if l.Orgs > 0 {
			s.SeriesPerOrg = float64(l.Series) / float64(l.Orgs)
			s.OrgSeriesPerOrg = float64(l.OrgSeries) / float64(l.Orgs)
		}
		type fam struct {
			name string
			n    int
		}
		var fams []fam
		for k, v := range l.Families {
			fams = append(fams, fam{k, v})
		}
		sort.Slice(fams, func(i, j int) bool {
			return fams[i].n > fams[j].n || fams[i].n == fams[j].n && fams[i].name < fams[j].name
		})
		for i, f := range fams {
			if i == 6 {
				break
			}
			per := ""
			if l.Orgs > 0 {
				per = fmt.Sprintf(" (%.1f/org)", float64(f.n)/float64(l.Orgs))
			}
			s.TopFamilies = append(s.TopFamilies, fmt.Sprintf("%s %d%s", f.name, f.n, per))
		}
		for _, m := range latenessMetrics {
			h := l.Hists[m]
			if h == nil || len(h.LE) == 0 {
				if h != nil && s.LatenessMetric == "" {
					s.LatenessMetric = m + " (no classic buckets)"
				}
				continue
			}
			s.LatenessMetric = m
			s.LatenessCount = h.Count
			s.LatenessP99All, s.LatenessBoundAll, _ = h.quantile(0.99)
			for i, c := range h.Counts {
				if c >= h.Counts[len(h.Counts)-1] {
					s.LatenessMaxLE = h.LE[i]
					break
				}
			}
			if firstSteady != nil && firstSteady != l {
				d := h.sub(firstSteady.Hists[m])
				s.LatenessP99Sty, s.LatenessBoundSty, _ = d.quantile(0.99)
			}
			break
		}
		if firstSteady != nil && l.T > firstSteady.T {
			s.ChecksPerMin = (l.ChecksTotal - firstSteady.ChecksTotal) / (l.T - firstSteady.T) * 60
		}
	}
	return s
}

// measureReload posts /-/reload and watches the server's count of finished
// checks every 50 ms, from 3 s before until 2 s after.
func measureReload(ctx context.Context, c *http.Client, r *replica, fake *fakeServer) ReloadResult {
	type pt struct {
		t time.Time
		n int64
	}
	var mu sync.Mutex
	var pts []pt
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for pctx.Err() == nil {
			n, err := fake.count(pctx, c)
			if err == nil {
				mu.Lock()
				pts = append(pts, pt{time.Now(), n})
				mu.Unlock()
			}
			sleepCtx(pctx, 50*time.Millisecond)
		}
	}()
	sleepCtx(ctx, 3*time.Second)
	var rr ReloadResult
	before, _ := readProc(r.proc.pid(), false)
	t0 := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/-/reload", nil)
	resp, err := c.Do(req)
	t1 := time.Now()
	rr.Took = t1.Sub(t0).Seconds()
	if err != nil {
		rr.Answer = err.Error()
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		rr.Status = resp.StatusCode
		rr.Answer = strings.TrimSpace(string(b))
	}
	after, _ := readProc(r.proc.pid(), false)
	rr.CPU = after.CPU - before.CPU
	sleepCtx(ctx, 2*time.Second)
	stop()
	<-done
	// Counts at t0 and t1, the rate in the 3 s before, the longest stretch
	// within [t0, t1] in which no check finished.
	at := func(t time.Time) int64 { // the last count read at or before t
		var n int64
		for _, p := range pts {
			if p.t.After(t) {
				break
			}
			n = p.n
		}
		return n
	}
	rr.Checks = at(t1) - at(t0)
	if rr.Took > 0 {
		rr.RateDuring = float64(rr.Checks) / rr.Took
	}
	if len(pts) > 0 && pts[0].t.Before(t0) {
		rr.RateBefore = float64(at(t0)-pts[0].n) / t0.Sub(pts[0].t).Seconds()
	}
	last := t0
	var prev int64 = -1
	for _, p := range pts {
		if prev >= 0 && p.n > prev && !p.t.Before(t0) {
			if p.t.After(t1) {
				rr.LongestGap = max(rr.LongestGap, t1.Sub(last).Seconds())
				last = t1
				break
			}
			rr.LongestGap = max(rr.LongestGap, p.t.Sub(last).Seconds())
			last = p.t
		}
		prev = p.n
	}
	if last.Before(t1) {
		rr.LongestGap = max(rr.LongestGap, t1.Sub(last).Seconds())
	}
	return rr
}
