package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAlertCollector(t *testing.T) {
	firing := []FiringAlert{{Org: "acme", Alertname: "TokenIntrospectionInactive"}, {Org: "globex", Alertname: "TokenAcquisitionFailed"}}
	c := NewAlertCollector(func() []FiringAlert { return firing })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `# HELP tokenwatch_alert_firing 1 for each alert tokenwatch raised that a destination accepted and that has not resolved; absent otherwise.
# TYPE tokenwatch_alert_firing gauge
tokenwatch_alert_firing{alertname="TokenAcquisitionFailed",org="globex"} 1
tokenwatch_alert_firing{alertname="TokenIntrospectionInactive",org="acme"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenwatch_alert_firing"); err != nil {
		t.Error(err)
	}
	// Resolved: the series is gone.
	firing = firing[:1]
	if n := testutil.CollectAndCount(c); n != 1 {
		t.Errorf("series after one resolved = %d, want 1", n)
	}
}
