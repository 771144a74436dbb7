package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// AgentMetrics are the agent's own health: how long checks wait for a free
// concurrency slot and how many run at once.
type AgentMetrics struct {
	wait     prometheus.Histogram
	late     prometheus.Histogram
	running  prometheus.Gauge
	logins   prometheus.Counter
	deferred *prometheus.CounterVec
	store    prometheus.Counter
}

// NewAgentMetrics registers the agent's metrics with reg.
func NewAgentMetrics(reg prometheus.Registerer) *AgentMetrics {
	f := promauto.With(reg)
	m := &AgentMetrics{
		wait: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenwatch_check_queue_wait_seconds",
			Help:    "Time a due check waited for a free slot under max_concurrent_checks before it started: the scheduling lag.",
			Buckets: []float64{.001, .01, .1, .5, 1, 5, 10, 30, 60, 300},
		}),
		late: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenwatch_check_schedule_lateness_seconds",
			Help:    "Time from a scheduled check's due time to its start, fleet-wide: the dispatcher's own delay plus the wait for a slot.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		running: f.NewGauge(prometheus.GaugeOpts{
			Name: "tokenwatch_checks_running",
			Help: "Checks running now.",
		}),
		logins: f.NewCounter(prometheus.CounterOpts{
			Name: "tokenwatch_logins_total",
			Help: "Token requests sent (logins), by scheduled checks and /probe.",
		}),
		deferred: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenwatch_logins_deferred_total",
			Help: "Checks that did not log in: the org backs off after a rejected login (backoff) or its identity's login budget was spent (budget).",
		}, []string{"reason"}),
		store: f.NewCounter(prometheus.CounterOpts{
			Name: "tokenwatch_storage_write_failures_total",
			Help: "Writes to the state store (--storage.path) that failed.",
		}),
	}
	for _, reason := range []string{"backoff", "budget"} {
		m.deferred.WithLabelValues(reason)
	}
	return m
}

// LoginSent records a token request sent.
func (m *AgentMetrics) LoginSent() { m.logins.Inc() }

// LoginDeferred records a check that did not log in, for reason backoff or budget.
func (m *AgentMetrics) LoginDeferred(reason string) { m.deferred.WithLabelValues(reason).Inc() }

// StoreFailed records a failed write to the state store.
func (m *AgentMetrics) StoreFailed() { m.store.Inc() }

// CheckStarted records a check that got its slot after waiting d.
func (m *AgentMetrics) CheckStarted(d time.Duration) {
	m.wait.Observe(d.Seconds())
	m.running.Inc()
}

// CheckLate records how long after its due time a scheduled check started.
func (m *AgentMetrics) CheckLate(d time.Duration) { m.late.Observe(d.Seconds()) }

// CheckFinished records a check that gave its slot back.
func (m *AgentMetrics) CheckFinished() { m.running.Dec() }
