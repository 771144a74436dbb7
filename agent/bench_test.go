package agent

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkRound1000Orgs applies a config of 1000 orgs (one simulated org
// serves all of them) and runs one round of checks with the default bound of
// 32 concurrent checks. It reports the round's wall time per org and the heap
// the agent holds per org afterwards (checkers, keep-alive clients, last results).
func BenchmarkRound1000Orgs(b *testing.B) {
	const n = 1000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("org-%04d", i)
	}
	sim := newSimulated(b, names...)
	cfg := sim.config(b, "", names...)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rec := newRecorder()
		ag := New(Options{Observers: []Observer{rec}, RunOnStart: true})
		// The whole round at once, as before first runs were spread.
		ag.firstRunSpacing = 0
		ag.Start()
		if err := ag.Apply(cfg); err != nil {
			b.Fatal(err)
		}
		rec.wait(b, "the round of checks", func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(rec.results) == n
		})
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/org")
		ag.Stop(context.Background())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/org-check")
}
