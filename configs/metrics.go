package configs

import "github.com/tokenwatch/tokenwatch/checks"

// Metrics says which of an org's costlier series are exposed (config
// `metrics:`, under global and per org). Each org always has the series of
// its last check, one per step among them; these add more per org.
type Metrics struct {
	// StepHistograms exposes tokenwatch_step_duration_seconds{org,step}, a
	// histogram per step: 56 series per org (4 steps x 14: 12 buckets, sum
	// and count).
	StepHistograms bool
	// Phases exposes tokenwatch_step_phase_duration_seconds{org,step,phase}
	// of the last check: 20 series per org (4 steps x 5 phases).
	Phases bool
}

// Series an org costs with each opt-in on, for the documentation and tests.
const (
	StepHistogramSeriesPerOrg = 4 * 14
	PhaseSeriesPerOrg         = 4 * 5
)

// metrics reads a metrics: section; keys it does not set keep def (off
// under global, the global setting under an org).
func (r *reader) metrics(s *section, def Metrics) Metrics {
	m := def
	if b, ok := s.boolean("step_histograms"); ok {
		m.StepHistograms = b
	}
	if b, ok := s.boolean("phases"); ok {
		m.Phases = b
	}
	s.done()
	return m
}

// Info is the org's identity for the exporters (checks.Target's Info) with
// its metrics settings, which the collector reads. It shadows the Target's
// method, so the agent's o.Info() carries them.
func (o Org) Info() checks.Info {
	info := o.Target.Info()
	info.StepHistograms = o.Metrics.StepHistograms
	info.Phases = o.Metrics.Phases
	return info
}
