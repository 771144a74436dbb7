package main

import (
	"fmt"
	"math"
	"strings"
)

func mib(b uint64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func mb(b int) string {
	switch {
	case b == 0:
		return "-"
	case b >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(b)/1e6)
	default:
		return fmt.Sprintf("%.0f kB", float64(b)/1e3)
	}
}

func secs(s float64) string {
	switch {
	case math.IsNaN(s) || s < 0:
		return "-"
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", s*1000)
}

func cpuS(c float64) string {
	if math.IsNaN(c) {
		return "-"
	}
	return fmt.Sprintf("%.2f CPU-s", c)
}

func cores(c float64) string {
	if math.IsNaN(c) {
		return "-"
	}
	return fmt.Sprintf("%.2f", c)
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func leStr(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return secs(v)
}

// reportRun prints one run: a column per replica.
func reportRun(b *strings.Builder, r *RunResult) {
	c := r.Config
	fmt.Fprintf(b, "### %s: %s orgs, %d replica(s), injected latency %s, %s from the launch\n\n",
		c.Label, thousands(c.Orgs), max(1, c.Shards), c.Latency, c.Duration)
	head := "| figure |"
	sep := "| --- |"
	for _, s := range r.Replicas {
		if s.Shard != "" {
			head += fmt.Sprintf(" --shard=%s |", s.Shard)
		} else {
			head += " value |"
		}
		sep += " --- |"
	}
	fmt.Fprintln(b, head)
	fmt.Fprintln(b, sep)
	row := func(name string, f func(s ReplicaSummary) string) {
		line := "| " + name + " |"
		for _, s := range r.Replicas {
			line += " " + f(s) + " |"
		}
		fmt.Fprintln(b, line)
	}
	row("launch to /-/healthy answering", func(s ReplicaSummary) string { return secs(s.ListenerUp) })
	row("launch to /-/ready", func(s ReplicaSummary) string { return secs(s.Ready) })
	row("launch to every org checked once (server's view)", func(ReplicaSummary) string {
		if r.AllChecked < 0 {
			return "not within the run"
		}
		return secs(r.AllChecked)
	})
	row("CPU from the launch until then", func(s ReplicaSummary) string { return fmt.Sprintf("%.1f CPU-s", s.CPUStartup) })
	row("steady window (from every org checked once)", func(ReplicaSummary) string {
		return fmt.Sprintf("%.0f-%.0f s (%.0f s)", r.SteadyFrom, r.SteadyTo, r.SteadyTo-r.SteadyFrom)
	})
	row("orgs checked in this run (/api/v1/orgs) / listed", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %s", thousands(s.Checked), thousands(s.Listed))
	})
	row("outcomes", func(s ReplicaSummary) string {
		var p []string
		for k, v := range s.Outcomes {
			p = append(p, fmt.Sprintf("%s %s", k, thousands(v)))
		}
		return strings.Join(p, ", ")
	})
	row("RSS steady (min / median / max)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %s / %s", mib(s.RSSMin), mib(s.RSSMed), mib(s.RSSMax))
	})
	row("peak RSS (VmHWM) at the end of the steady window", func(s ReplicaSummary) string { return mib(s.HWMSteady) })
	row("CPU steady (mean / busiest 10 s)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %s cores", cores(s.CPUSteady), cores(s.CPUSteadyMax))
	})
	row("waiting for a CPU (run queue), steady: contention", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s cores", cores(s.WaitSteady))
	})
	row("goroutines steady (median / max)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%.0f / %.0f", s.GoroutinesMed, s.GoroutinesMax)
	})
	row("threads (max)", func(s ReplicaSummary) string { return fmt.Sprint(s.ThreadsMax) })
	row("open fds steady (median / max), of which sockets", func(s ReplicaSummary) string {
		return fmt.Sprintf("%d / %d, sockets %d / %d", s.FDsMed, s.FDsMax, s.SocketsMed, s.SocketsMax)
	})
	row("/metrics time steady (min / median / max), gzip as Prometheus", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %s / %s (%d scrapes, %d failed)", secs(s.MetricsMin), secs(s.MetricsMed), secs(s.MetricsMax), s.Scrapes, s.ScrapeErrors)
	})
	row("daemon CPU during a gzip scrape (median; checks meanwhile included)", func(s ReplicaSummary) string {
		return cpuS(s.MetricsCPUMed)
	})
	row("/metrics time without gzip (median / max)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %s", secs(s.MetricsPlainMed), secs(s.MetricsPlainMax))
	})
	row("/metrics body (uncompressed / gzip)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %s", mb(s.MetricsBody), mb(s.MetricsWire))
	})
	row("/metrics in protobuf with gzip: time (median / max), body (uncompressed / gzip)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %s, %s / %s", secs(s.MetricsProtoMed), secs(s.MetricsProtoMax), mb(s.MetricsProtoBody), mb(s.MetricsProtoWire))
	})
	row("series (all / per org; with an org label, per org)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s / %.1f; %.1f", thousands(s.Series), s.SeriesPerOrg, s.OrgSeriesPerOrg)
	})
	row("largest families", func(s ReplicaSummary) string { return strings.Join(s.TopFamilies, "; ") })
	row("staleness max (daemon: now - oldest last_run; server: now - oldest last check)", func(s ReplicaSummary) string {
		return fmt.Sprintf("%s; server %s", secs(s.StalenessMax), secs(r.StaleMaxSrv))
	})
	row("checks per minute (tokenwatch_checks_total, steady)", func(s ReplicaSummary) string { return fmt.Sprintf("%.0f", s.ChecksPerMin) })
	row("interval between two checks of one org (server, from 65 s after all were checked: min / p1 / p50 / p99 / max)", func(ReplicaSummary) string {
		iv := r.Server.Intervals
		if iv.N == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f / %.2f s (n=%s)", iv.Min, iv.P01, iv.P50, iv.P99, iv.Max, thousands(iv.N))
	})
	row("scheduling lateness p99: since the launch / steady (bucket bound); all within", func(s ReplicaSummary) string {
		if s.LatenessMetric == "" {
			return "no histogram exported"
		}
		return fmt.Sprintf("%s / %s (<= %s / <= %s); all <= %s, from `%s`", secs(s.LatenessP99All), secs(s.LatenessP99Sty),
			leStr(s.LatenessBoundAll), leStr(s.LatenessBoundSty), leStr(s.LatenessMaxLE), s.LatenessMetric)
	})
	fmt.Fprintf(b, "\nFake server: %s cores, RSS %s, %s open connections at the end (most at once %s), requests %v, errors %v. This program: %s cores. The whole machine over the steady window: %s cores busy, of which %s by other work.\n",
		cores(r.FakeCPU), mib(r.FakeRSS), thousands(int(r.Server.Conns)), thousands(int(r.Server.MaxConns)), r.Server.Requests, r.Server.Errors, cores(r.BenchCPU),
		cores(r.MachineCPU), cores(max(0, r.Others)))
	if sc := r.Shard; sc != nil {
		fmt.Fprintf(b, "\nShard check (/api/v1/orgs of each replica): orgs checked per replica %v, union %s of %s, checked by two replicas %d, by none %d; shortest interval between two checks of one org (server) %.1f s: %s.\n",
			sc.PerReplica, thousands(sc.Union), thousands(c.Orgs), sc.Duplicates, sc.Missing, sc.MinInterval, map[bool]string{true: "every org checked by exactly one replica", false: "FAILED"}[sc.OK])
	}
	if len(r.Reloads) > 0 {
		fmt.Fprintf(b, "\n| POST /-/reload (one org changed) | took | status | CPU | checks finished meanwhile (server) | rate before / during | longest stretch without a finished check |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for i, rr := range r.Reloads {
			fmt.Fprintf(b, "| %d (%s) | %s | %d | %.2f CPU-s | %d | %.0f / %.0f per s | %s |\n", i+1, rr.Org, secs(rr.Took), rr.Status, rr.CPU, rr.Checks, rr.RateBefore, rr.RateDuring, secs(rr.LongestGap))
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(b, "\nNote: %s\n", e)
	}
	fmt.Fprintln(b)
}

// reportGrowth prints one row per org count.
func reportGrowth(b *strings.Builder, rs []*RunResult) {
	if len(rs) > 0 {
		fmt.Fprintf(b, "Each run: %s from the launch (longer when needed for %s after every org was checked once), /metrics scraped every %s, /proc sampled every %s.\n\n",
			rs[0].Config.Duration, rs[0].Config.MinSteady, rs[0].Config.Scrape, rs[0].Config.Sample)
	}
	fmt.Fprintln(b, "| orgs | steady window | RSS steady (min-max) | peak RSS | CPU steady (cores) | /metrics time, gzip (median / max) | without gzip (median) | daemon CPU per scrape | /metrics body / gzip | protobuf: time (median), body | series per org | goroutines | open fds (sockets) | listener up | all checked once | staleness max | run-queue wait (cores) |")
	fmt.Fprintln(b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		if len(r.Replicas) == 0 {
			continue
		}
		s := r.Replicas[0]
		checked := "not within the run"
		if r.AllChecked >= 0 {
			checked = secs(r.AllChecked)
		}
		fmt.Fprintf(b, "| %s | %.0f s | %s-%s | %s | %s | %s / %s | %s | %s | %s / %s | %s, %s | %.1f | %.0f | %d (%d) | %s | %s | %s | %s |\n",
			thousands(r.Config.Orgs), r.SteadyTo-r.SteadyFrom, strings.TrimSuffix(mib(s.RSSMin), " MiB"), mib(s.RSSMax), mib(s.HWMSteady),
			cores(s.CPUSteady), secs(s.MetricsMed), secs(s.MetricsMax), secs(s.MetricsPlainMed), cpuS(s.MetricsCPUMed), mb(s.MetricsBody), mb(s.MetricsWire),
			secs(s.MetricsProtoMed), mb(s.MetricsProtoBody), s.SeriesPerOrg,
			s.GoroutinesMed, s.FDsMed, s.SocketsMed, secs(s.ListenerUp), checked, secs(max(s.StalenessMax, r.StaleMaxSrv)), cores(s.WaitSteady))
	}
	fmt.Fprintln(b)
	for _, r := range rs {
		for _, e := range r.Errors {
			fmt.Fprintf(b, "Note (%s orgs): %s\n\n", thousands(r.Config.Orgs), e)
		}
	}
	for _, r := range rs {
		fmt.Fprintf(b, "- %s orgs: the whole machine %s cores busy over the steady window, %s of them other work; fake server %s cores; outcomes %v.\n",
			thousands(r.Config.Orgs), cores(r.MachineCPU), cores(max(0, r.Others)), cores(r.FakeCPU), firstOutcomes(r))
	}
	fmt.Fprintln(b)
}

func phaseMs(p map[string]float64, k string) string {
	v, ok := p[k]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.3f ms", v*1000)
}

func firstOutcomes(r *RunResult) map[string]int {
	if len(r.Replicas) == 0 {
		return nil
	}
	return r.Replicas[0].Outcomes
}

// reportAccuracy prints reported minus injected per step.
func reportAccuracy(b *strings.Builder, rs []*RunResult) {
	fmt.Fprintln(b, "| orgs | injected per endpoint | step | steps measured | median reported | median - injected | p10 / p90 reported | server's own median (injected included) | median reported - server's | max_concurrent_checks |")
	fmt.Fprintln(b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		for _, a := range r.Accuracy {
			srv, diff := "-", "-"
			if a.ServerMedian > 0 {
				srv = ms(a.ServerMedian)
				diff = fmt.Sprintf("%+.2f ms", (a.Median-a.ServerMedian)*1000)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %+.2f ms | %s / %s | %s | %s | %d |\n", thousands(r.Config.Orgs), r.Config.Latency, a.Step, thousands(a.N),
				ms(a.Median), a.MedianExcess*1000, ms(a.P10), ms(a.P90), srv, diff, r.Config.MaxConcurrent)
		}
	}
	fmt.Fprintln(b)
	fmt.Fprintln(b, "Medians of the reported phases (httptrace), per step:")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| orgs | injected | step | resolve | connect | tls | processing | transfer | steps on a new connection (connect > 0) |")
	fmt.Fprintln(b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		for _, a := range r.Accuracy {
			if a.Step == "all" {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %.1f%% (their median connect %s) |\n", thousands(r.Config.Orgs), r.Config.Latency, a.Step,
				phaseMs(a.Phases, "resolve"), phaseMs(a.Phases, "connect"), phaseMs(a.Phases, "tls"), phaseMs(a.Phases, "processing"), phaseMs(a.Phases, "transfer"),
				100*a.NewConnShare, ms(a.NewConnMedian))
		}
	}
	fmt.Fprintln(b)
	for _, r := range rs {
		if len(r.Replicas) > 0 {
			s := r.Replicas[0]
			fmt.Fprintf(b, "- %s orgs, %s: every org checked once %s after the launch; steady CPU %s cores, RSS %s-%s, outcomes %v; run-queue wait %s cores; the whole machine %s cores busy, %s of them other work.\n",
				thousands(r.Config.Orgs), r.Config.Latency, secs(r.AllChecked), cores(s.CPUSteady), mib(s.RSSMin), mib(s.RSSMax), s.Outcomes,
				cores(s.WaitSteady), cores(r.MachineCPU), cores(max(0, r.Others)))
		}
		for _, e := range r.Errors {
			fmt.Fprintf(b, "- Note (%s orgs, %s): %s\n", thousands(r.Config.Orgs), r.Config.Latency, e)
		}
	}
	fmt.Fprintln(b)
}

// growthSVG draws RSS, CPU, /metrics time and size against orgs (log
// scale), four panels, with the goals at 10,000 orgs as dashed lines.
func growthSVG(rs []*RunResult, machine string) string {
	type panel struct {
		title, unit string
		val         func(ReplicaSummary) float64
		goal        float64
		goalLabel   string
	}
	panels := []panel{
		{"RSS, steady (max) and peak", "MiB", func(s ReplicaSummary) float64 { return float64(s.RSSMax) / (1 << 20) }, 300, "goal at 10,000: 300 MiB"},
		{"CPU, steady mean", "cores", func(s ReplicaSummary) float64 { return s.CPUSteady }, 0, ""},
		{"/metrics response time (median)", "s", func(s ReplicaSummary) float64 { return s.MetricsMed }, 0.25, "goal at 10,000: 250 ms"},
		{"/metrics body (uncompressed)", "MB", func(s ReplicaSummary) float64 { return float64(s.MetricsBody) / 1e6 }, 8, "goal at 10,000: 8 MB"},
	}
	peak := func(s ReplicaSummary) float64 { return float64(s.HWMSteady) / (1 << 20) }
	var xs []float64
	var sums []ReplicaSummary
	for _, r := range rs {
		if len(r.Replicas) > 0 {
			xs = append(xs, float64(r.Config.Orgs))
			sums = append(sums, r.Replicas[0])
		}
	}
	const W, H, pw, ph = 960, 700, 400, 240
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" text-anchor="middle">tokenwatch against orgs on @every 1m (bench/scale -mode growth)</text>`+"\n", W/2)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" text-anchor="middle" fill="#555">%s</text>`+"\n", W/2, H-10, escape(machine))
	xmin, xmax := math.Log10(50), math.Log10(40000)
	for pi, p := range panels {
		ox := 70 + (pi%2)*(pw+80)
		oy := 70 + (pi/2)*(ph+90)
		ys := make([]float64, len(sums))
		ymax := p.goal * 1.1
		for i, s := range sums {
			ys[i] = p.val(s)
			if !math.IsNaN(ys[i]) {
				ymax = max(ymax, ys[i])
			}
			if pi == 0 {
				ymax = max(ymax, peak(s))
			}
		}
		step := niceStep(ymax * 1.08 / 4)
		ymax = math.Ceil(ymax*1.08/step) * step
		if ymax <= 0 {
			ymax, step = 1, 0.25
		}
		ticks := int(math.Round(ymax / step))
		px := func(x float64) float64 { return float64(ox) + (math.Log10(x)-xmin)/(xmax-xmin)*pw }
		py := func(y float64) float64 { return float64(oy+ph) - y/ymax*ph }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s (%s)</text>`+"\n", ox, oy-10, escape(p.title), p.unit)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", ox, oy, pw, ph)
		for k := 0; k <= ticks; k++ {
			y := step * float64(k)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n",
				ox, py(y), ox+pw, py(y), ox-5, py(y)+4, fmtTick(y))
		}
		for _, x := range []float64{100, 1000, 5000, 10000, 20000} {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n",
				px(x), oy, px(x), oy+ph, px(x), oy+ph+15, shortCount(x))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#333">orgs (log scale)</text>`+"\n", ox+pw/2, oy+ph+32)
		if p.goal > 0 {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c00" stroke-dasharray="6,4"/><text x="%d" y="%.1f" fill="#c00" font-size="11">%s</text>`+"\n",
				ox, py(p.goal), ox+pw, py(p.goal), ox+5, py(p.goal)-4, p.goalLabel)
		}
		series := []struct {
			vals  []float64
			color string
			name  string
		}{{ys, "#1f5fbf", ""}}
		if pi == 0 {
			pk := make([]float64, len(sums))
			for i, s := range sums {
				pk[i] = peak(s)
			}
			series = append(series, struct {
				vals  []float64
				color string
				name  string
			}{pk, "#e08000", "peak (VmHWM)"})
			series[0].name = "steady max"
		}
		for si, sr := range series {
			var pts []string
			for i, x := range xs {
				if math.IsNaN(sr.vals[i]) {
					continue
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x), py(sr.vals[i])))
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), sr.color)
			for i, x := range xs {
				v := sr.vals[i]
				if math.IsNaN(v) {
					continue
				}
				dy := -8.0
				if si == 1 {
					dy = 16
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/><text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="%s">%s</text>`+"\n",
					px(x), py(v), sr.color, px(x), py(v)+dy, sr.color, fmtTick(v))
			}
			if sr.name != "" {
				fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d" font-size="11">%s</text>`+"\n",
					ox+10, oy+14+si*16, ox+30, oy+14+si*16, sr.color, ox+35, oy+18+si*16, sr.name)
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func shortCount(x float64) string {
	if x >= 1000 {
		return fmt.Sprintf("%gk", x/1000)
	}
	return fmt.Sprint(x)
}

// niceStep rounds a tick step up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 0.25
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
