package prometheus

import (
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// AgentMetrics are the agent's own health: how long checks wait for a free
// concurrency slot and how many run at once.
type AgentMetrics struct {
	wait    prom.Histogram
	running prom.Gauge
}

// NewAgentMetrics registers the agent's metrics with reg.
func NewAgentMetrics(reg prom.Registerer) *AgentMetrics {
	f := promauto.With(reg)
	return &AgentMetrics{
		wait: f.NewHistogram(prom.HistogramOpts{
			Name:    "tokenwatch_check_queue_wait_seconds",
			Help:    "Time a due check waited for a free slot under max_concurrent_checks before it started: the scheduling lag.",
			Buckets: []float64{.001, .01, .1, .5, 1, 5, 10, 30, 60, 300},
		}),
		running: f.NewGauge(prom.GaugeOpts{
			Name: "tokenwatch_checks_running",
			Help: "Checks running now.",
		}),
	}
}

// CheckStarted records a check that got its slot after waiting d.
func (m *AgentMetrics) CheckStarted(d time.Duration) {
	m.wait.Observe(d.Seconds())
	m.running.Inc()
}

// CheckFinished records a check that gave its slot back.
func (m *AgentMetrics) CheckFinished() { m.running.Dec() }
