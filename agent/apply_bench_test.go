package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// BenchmarkApply10000 measures Apply with 10,000 orgs on a started agent:
// the first configuration (every org added), and a reload that changes one
// org's labels. A quadratic Apply (a full scan or sort per org) shows here
// as seconds per op. Orgs run "@every 1h" with RunOnStart off, so few checks
// run meanwhile; they go to a simulated org with no apps and fail at once.
func BenchmarkApply10000(b *testing.B) {
	const n = 10000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("org-%05d", i)
	}
	sim := newSimulated(b)
	cfg := sim.config(b, "", names...)
	// The same configuration with one org's labels changed.
	changed := *cfg
	changed.Orgs = slices.Clone(cfg.Orgs)
	changed.Orgs[n/2].Labels = maps.Clone(changed.Orgs[n/2].Labels)
	if changed.Orgs[n/2].Labels == nil {
		changed.Orgs[n/2].Labels = map[string]string{}
	}
	changed.Orgs[n/2].Labels["team"] = "changed"

	b.Run("initial", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			ag := New(Options{})
			ag.Start()
			b.StartTimer()
			if err := ag.Apply(cfg); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			ag.Stop(context.Background())
			b.StartTimer()
		}
	})
	b.Run("reload-one-changed", func(b *testing.B) {
		ag := New(Options{})
		ag.Start()
		defer ag.Stop(context.Background())
		if err := ag.Apply(cfg); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := range b.N {
			next := cfg
			if i%2 == 0 {
				next = &changed
			}
			if err := ag.Apply(next); err != nil {
				b.Fatal(err)
			}
		}
	})
}
