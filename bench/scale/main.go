// Command scale measures the tokenwatch daemon at scale: N orgs on
// `@every 1m`, each with its own client id, checked against a minimal fake
// OAuth server (bench/scale/fakeoauth, its own process) on 127.0.0.1. It
// builds both from this tree, runs them, samples /proc and /metrics, and
// prints Markdown tables (and writes every sample as JSON). See README.md.
//
//	go run ./bench/scale -orgs 10000                      # one run (4 minutes), with 3 reloads
//	go run ./bench/scale -mode accuracy                   # 50 ms and 200 ms injected, at 10 and 10,000 orgs
//	go run ./bench/scale -mode growth                     # 100 ... 20,000 orgs, 3 minutes each, table and plot
//	go run ./bench/scale -mode shard -orgs 10000          # 3 replicas with --shard=i/3 on one config
//	go run ./bench/scale -mode all                        # the four above, each with its defaults (about 45 minutes)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("scale: ")
	modeFlag := flag.String("mode", "run", "run | accuracy | growth | shard | all (the four, each with its defaults)")
	orgs := flag.Int("orgs", 10000, "orgs (run, shard)")
	orgsList := flag.String("orgs-list", "", "comma-separated org counts (growth: 100,1000,5000,10000,20000; accuracy: 10,10000)")
	duration := flag.Duration("duration", 0, "length of each run, from the launch (default: run 4m, shard 3m, growth 3m, accuracy 150s)")
	minSteady := flag.Duration("min-steady", 90*time.Second, "at least this much of each run follows the moment every org was checked once")
	latency := flag.Duration("latency", 0, "latency injected on every endpoint of the fake server (run, shard)")
	latencies := flag.String("latencies", "50ms,200ms", "latencies injected (accuracy)")
	shards := flag.Int("shards", 3, "replicas (shard)")
	sample := flag.Duration("sample", 2*time.Second, "/proc sampling period")
	scrape := flag.Duration("scrape", 30*time.Second, "/metrics scrape period (30s: the interval of the shipped Prometheus configuration and ServiceMonitor; its cost is part of the CPU figures)")
	reloads := flag.Int("reloads", -1, "POST /-/reload after changing one org, after the steady window (default: 3 in run mode, else 0)")
	maxConc := flag.Int("max-concurrent", 0, "global.max_concurrent_checks; 0: the daemon's default (accuracy: enough for the injected latency)")
	out := flag.String("out", "", "folder for the JSON of every run and the Markdown report (default: a new folder under the temp dir)")
	plot := flag.String("plot", "docs/performance-growth.svg", "growth: the plot to write, relative to -repo")
	repo := flag.String("repo", ".", "the module's root")
	rev := flag.String("rev", "", "build tokenwatch from this commit (git archive) instead of the working tree, e.g. HEAD")
	from := flag.String("from", "", "print the report (and write the plot) from the JSON in this earlier -out folder, without running")
	keep := flag.Bool("keep", false, "keep the working folder (configurations, logs, storage)")
	limit := flag.Duration("timeout", 0, "give up after this long (default: every run's duration plus 5 minutes each)")
	flag.Parse()

	def := map[string]time.Duration{"run": 4 * time.Minute, "shard": 3 * time.Minute, "growth": 3 * time.Minute, "accuracy": 150 * time.Second}
	modes := []string{*modeFlag}
	if *modeFlag == "all" {
		modes = []string{"run", "accuracy", "growth", "shard"}
	} else if _, ok := def[*modeFlag]; !ok {
		log.Fatalf("-mode %q: run, accuracy, growth, shard or all", *modeFlag)
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		log.Fatal(err)
	}

	// The runs of each mode.
	plan := func(mode string) []RunConfig {
		base := RunConfig{Duration: *duration, MinSteady: *minSteady, Sample: *sample, Scrape: *scrape, MaxConcurrent: *maxConc, Reloads: *reloads}
		if base.Duration == 0 {
			base.Duration = def[mode]
		}
		if base.Reloads < 0 {
			base.Reloads = 0
			if mode == "run" {
				base.Reloads = 3
			}
		}
		list := *orgsList
		if list == "" || *modeFlag == "all" {
			list = map[string]string{"growth": "100,1000,5000,10000,20000", "accuracy": "10,10000"}[mode]
		}
		var counts []int
		for f := range strings.SplitSeq(list, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				log.Fatalf("-orgs-list: %q", f)
			}
			counts = append(counts, n)
		}
		var runs []RunConfig
		switch mode {
		case "run":
			rc := base
			rc.Label, rc.Orgs, rc.Latency = fmt.Sprintf("run-%d", *orgs), *orgs, *latency
			runs = append(runs, rc)
		case "shard":
			rc := base
			rc.Label, rc.Orgs, rc.Latency, rc.Shards = fmt.Sprintf("shard-%d-of-%d", *orgs, *shards), *orgs, *latency, *shards
			runs = append(runs, rc)
		case "growth":
			for _, n := range counts {
				rc := base
				rc.Label, rc.Orgs, rc.Latency = fmt.Sprintf("growth-%d", n), n, *latency
				runs = append(runs, rc)
			}
		case "accuracy":
			for _, n := range counts {
				for f := range strings.SplitSeq(*latencies, ",") {
					l, err := time.ParseDuration(strings.TrimSpace(f))
					if err != nil {
						log.Fatalf("-latencies: %v", err)
					}
					rc := base
					rc.Label, rc.Orgs, rc.Latency, rc.CollectSteps = fmt.Sprintf("accuracy-%d-%s", n, l), n, l, true
					if rc.MaxConcurrent == 0 {
						// Each check waits 4 x latency: enough slots for every org
						// within a third of the minute, and never fewer than the default 32.
						rc.MaxConcurrent = max(32, int(float64(n)*4*l.Seconds()/20)+1)
					}
					runs = append(runs, rc)
				}
			}
		}
		return runs
	}
	plans := map[string][]RunConfig{}
	var runs []RunConfig
	for _, m := range modes {
		plans[m] = plan(m)
		runs = append(runs, plans[m]...)
	}
	total := *limit
	if total == 0 {
		for _, rc := range runs {
			total += rc.Duration + rc.MinSteady + 5*time.Minute + time.Duration(rc.Reloads)*20*time.Second
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Printf("%s: stopping", s)
		cancel()
	}()
	defer stopAll()

	work, err := os.MkdirTemp("", "tokenwatch-scale-")
	if err != nil {
		log.Fatal(err)
	}
	if *keep {
		log.Printf("working folder %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}
	if *out == "" {
		*out = work + "-out"
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	results := map[string][]*RunResult{}
	failed := false
	var machine string
	if *from != "" {
		// Only the report, from the JSON an earlier run wrote.
		for _, m := range modes {
			for _, rc := range plans[m] {
				b, err := os.ReadFile(filepath.Join(*from, rc.Label+".json"))
				if err != nil {
					log.Printf("%s: %v", rc.Label, err)
					continue
				}
				var res RunResult
				if err := json.Unmarshal(b, &res); err != nil {
					log.Fatalf("%s: %v", rc.Label, err)
				}
				decodeSpecial(&res)
				results[m] = append(results[m], &res)
				machine = res.Machine
			}
		}
		plans = nil
	} else {
		log.Printf("building tokenwatch and fakeoauth from %s", root)
		if _, _, err := buildBinaries(root, *rev, work); err != nil {
			log.Fatal(err)
		}
		machine = describeMachine(root, *rev)
		log.Printf("%s; bound: %s", machine, total.Round(time.Second))
	}
	e := &env{tokenwatch: filepath.Join(work, "tokenwatch"), fake: filepath.Join(work, "fakeoauth"), work: work}
	for _, m := range modes {
		for _, rc := range plans[m] {
			if ctx.Err() != nil {
				break
			}
			res, err := doRun(ctx, e, rc)
			if res != nil {
				res.Machine = machine
			}
			if err != nil {
				log.Printf("%s: %v", rc.Label, err)
				failed = true
				continue
			}
			results[m] = append(results[m], res)
			encodeSpecial(res)
			b, err := json.MarshalIndent(res, "", " ")
			decodeSpecial(res)
			if err == nil {
				err = os.WriteFile(filepath.Join(*out, rc.Label+".json"), b, 0o644)
			}
			if err != nil {
				log.Printf("%s: writing the JSON: %v", rc.Label, err)
			}
			for _, msg := range res.Errors {
				log.Printf("%s: %s", rc.Label, msg)
			}
		}
	}

	var md strings.Builder
	fmt.Fprintf(&md, "<!-- go run ./bench/scale %s -->\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(&md, "Machine: %s.\n\n", machine)
	for _, m := range modes {
		rs := results[m]
		if len(modes) > 1 {
			fmt.Fprintf(&md, "## -mode %s\n\n", m)
		}
		switch m {
		case "run", "shard":
			for _, r := range rs {
				reportRun(&md, r)
			}
		case "growth":
			reportGrowth(&md, rs)
			if len(rs) > 0 {
				path := *plot
				if !filepath.IsAbs(path) {
					path = filepath.Join(root, path)
				}
				if err := os.WriteFile(path, []byte(growthSVG(rs, machine)), 0o644); err != nil {
					log.Printf("plot: %v", err)
				} else {
					log.Printf("plot written to %s", path)
				}
			}
		case "accuracy":
			reportAccuracy(&md, rs)
		}
	}
	fmt.Print(md.String())
	_ = os.WriteFile(filepath.Join(*out, "report.md"), []byte(md.String()), 0o644)
	log.Printf("report and JSON in %s", *out)
	if failed {
		stopAll()
		if !*keep {
			os.RemoveAll(work)
		}
		os.Exit(1)
	}
}

// describeMachine names the cores, the Go version and the tree measured.
func describeMachine(root, rev string) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	nofile := ""
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		nofile = fmt.Sprintf(", open-file hard limit %d", rl.Max)
	}
	at := "unknown revision"
	name := rev
	if name == "" {
		name = "HEAD"
	}
	if b, err := exec.Command("git", "-C", root, "rev-parse", "--short", name).Output(); err == nil {
		at = "commit " + strings.TrimSpace(string(b))
		if rev == "" {
			// Changes to this program and its report do not change the daemon.
			if b, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".",
				":(exclude)bench/scale", ":(exclude)docs/performance.md", ":(exclude)docs/performance-growth.svg").Output(); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				at += fmt.Sprintf(" + uncommitted changes in %d files", len(strings.Split(strings.TrimSpace(string(b)), "\n")))
			}
		}
	}
	return fmt.Sprintf("%d cores (nproc), %s%s, %s, %s%s, tokenwatch at %s, %s",
		runtime.NumCPU(), cpu, mem, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH, nofile, at, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}
