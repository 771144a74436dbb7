package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// FiringAlert is an alert that at least one destination accepted.
type FiringAlert struct {
	Org, Alertname string
}

// AlertCollector exposes tokenwatch_alert_firing: 1 for each alert that
// fired (a destination accepted it) and has not resolved. Alerts that are
// pending, not yet accepted or resolved have no series, so the metric stays
// small with thousands of healthy orgs; alert on its presence.
type AlertCollector struct {
	desc   *prometheus.Desc
	firing func() []FiringAlert
}

// NewAlertCollector returns a collector that asks firing for the alerts on
// every scrape.
func NewAlertCollector(firing func() []FiringAlert) *AlertCollector {
	return &AlertCollector{
		desc: prometheus.NewDesc("tokenwatch_alert_firing",
			"1 for each alert tokenwatch raised that a destination accepted and that has not resolved; absent otherwise.",
			[]string{labelOrg, "alertname"}, nil),
		firing: firing,
	}
}

// Describe implements prometheus.Collector.
func (c *AlertCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *AlertCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.firing() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, a.Org, a.Alertname)
	}
}
