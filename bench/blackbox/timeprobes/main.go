// Command timeprobes times probe URLs of blackbox_exporter and tokenwatch
// (/probe answers in the Prometheus text format) for the comparison in
// docs/comparison.md, run by bench/blackbox/run.sh.
//
// Each target is fetched -n times, one request at a time, in -rounds blocks
// that alternate between the targets, so drift of the machine spreads over
// all of them. It prints one Markdown table row per target: the wall time of
// the /probe request (median, p10, p90), the duration the tool reports for
// itself (median), the CPU time the tool's process and the server's process
// spent per probe (from /proc, over the target's blocks), and how many
// probes succeeded.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// listFlag collects a repeatable label=value flag.
type listFlag map[string]string

func (l listFlag) String() string { return fmt.Sprint(map[string]string(l)) }

func (l listFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want label=value, got %q", v)
	}
	l[k] = val
	return nil
}

type target struct {
	label, url, selfMetric string
	toolPID                int
	wall, self             []time.Duration
	toolCPU, serverCPU     time.Duration
	ok, total              int
}

func main() {
	n := flag.Int("n", 300, "probes per target")
	rounds := flag.Int("rounds", 3, "blocks per target; the targets alternate between blocks")
	warmup := flag.Int("warmup", 10, "unrecorded probes per target first (connections, caches)")
	serverPID := flag.Int("server-pid", 0, "process id of the authorization server, for its CPU per probe")
	self, pids := listFlag{}, listFlag{}
	flag.Var(self, "self", "label=metric: the metric in which the tool reports the probe's duration (repeatable)")
	flag.Var(pids, "tool-pid", "label=pid: the process answering that target's probes (repeatable)")
	flag.Parse()
	if flag.NArg() == 0 || *n < *rounds || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "usage: timeprobes [flags] label=URL ...")
		os.Exit(2)
	}
	var targets []*target
	for _, arg := range flag.Args() {
		label, u, ok := strings.Cut(arg, "=")
		if !ok || !strings.HasPrefix(u, "http://127.0.0.1:") {
			fmt.Fprintf(os.Stderr, "target %q: want label=http://127.0.0.1:PORT/...\n", arg)
			os.Exit(2)
		}
		t := &target{label: label, url: u, selfMetric: self[label]}
		if p := pids[label]; p != "" {
			t.toolPID, _ = strconv.Atoi(p)
		}
		targets = append(targets, t)
	}

	client := &http.Client{Timeout: 30 * time.Second}
	for _, t := range targets {
		for range *warmup {
			_, _, _ = fetch(client, t.url)
		}
	}
	for round := range *rounds {
		// Spread n over the rounds; the first n % rounds rounds take one more.
		per := *n / *rounds
		if round < *n%*rounds {
			per++
		}
		for _, t := range targets {
			toolBefore, serverBefore := cpuTime(t.toolPID), cpuTime(*serverPID)
			for range per {
				start := time.Now()
				body, ok, err := fetch(client, t.url)
				t.wall = append(t.wall, time.Since(start))
				t.total++
				if err != nil {
					continue
				}
				if ok {
					t.ok++
				}
				if d, found := metricSeconds(body, t.selfMetric); found {
					t.self = append(t.self, d)
				}
			}
			t.toolCPU += cpuTime(t.toolPID) - toolBefore
			t.serverCPU += cpuTime(*serverPID) - serverBefore
		}
	}

	fmt.Println("| probe | n | wall median | wall p10 | wall p90 | tool's own figure, median | tool CPU per probe | server CPU per probe | succeeded |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, t := range targets {
		selfMedian := "n/a"
		if len(t.self) > 0 {
			selfMedian = ms(percentile(t.self, 50))
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s | %d/%d |\n", t.label, t.total,
			ms(percentile(t.wall, 50)), ms(percentile(t.wall, 10)), ms(percentile(t.wall, 90)), selfMedian,
			perProbe(t.toolCPU, t.total, t.toolPID), perProbe(t.serverCPU, t.total, *serverPID), t.ok, t.total)
	}
}

// fetch GETs a probe URL and reports whether the probe succeeded
// (probe_success 1 or tokenwatch_probe_success 1).
func fetch(c *http.Client, u string) (string, bool, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", false, err
	}
	body := string(b)
	v, found := metricValue(body, "probe_success")
	if !found {
		v, found = metricValue(body, "tokenwatch_probe_success")
	}
	return body, found && v == 1, nil
}

// metricValue returns the value of the first sample of the named metric.
func metricValue(body, name string) (float64, bool) {
	if name == "" {
		return 0, false
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			return v, true
		}
	}
	return 0, false
}

func metricSeconds(body, name string) (time.Duration, bool) {
	v, ok := metricValue(body, name)
	return time.Duration(v * float64(time.Second)), ok
}

// cpuTime is the user plus system CPU time of a process (0 when unknown).
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func perProbe(cpu time.Duration, n, pid int) string {
	if pid <= 0 || n == 0 {
		return "n/a"
	}
	return ms(cpu / time.Duration(n))
}
