package configs

import (
	"testing"

	"github.com/tokenwatch/tokenwatch/checks"
)

// The opt-in series are off by default, global settings reach every org,
// and an org's own key wins over the global one, key by key.
func TestMetricsSettings(t *testing.T) {
	org := func(name, metrics string) string {
		return `
  - name: ` + name + `
    url: https://` + name + `.my.salesforce.com
    client: {id: c, secret_file: client-secret.txt}
    grant: {type: client_credentials}
` + metrics
	}
	tests := []struct {
		name   string
		global string
		orgs   string
		want   map[string]Metrics
	}{
		{"off by default", "", org("a", ""),
			map[string]Metrics{"a": {}}},
		{"an empty section changes nothing", "global:\n  metrics: {}\n", org("a", "    metrics: {}\n"),
			map[string]Metrics{"a": {}}},
		{"per org", "", org("a", "    metrics: {step_histograms: true, phases: true}\n") + org("b", "    metrics: {phases: true}\n") + org("c", ""),
			map[string]Metrics{"a": {StepHistograms: true, Phases: true}, "b": {Phases: true}, "c": {}}},
		{"global reaches every org; an org overrides key by key",
			"global:\n  metrics: {step_histograms: true, phases: true}\n",
			org("a", "") + org("b", "    metrics: {step_histograms: false}\n") + org("c", "    metrics: {phases: false, step_histograms: false}\n"),
			map[string]Metrics{"a": {StepHistograms: true, Phases: true}, "b": {Phases: true}, "c": {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.global+"orgs:"+tt.orgs, nil)
			if len(cfg.Orgs) != len(tt.want) {
				t.Fatalf("%d orgs, want %d", len(cfg.Orgs), len(tt.want))
			}
			for _, o := range cfg.Orgs {
				if o.Metrics != tt.want[o.Name] {
					t.Errorf("org %s: metrics %+v, want %+v", o.Name, o.Metrics, tt.want[o.Name])
				}
				// The agent hands the collector o.Info(): the settings go with it.
				info := o.Info()
				want := o.Target.Info()
				want.StepHistograms, want.Phases = tt.want[o.Name].StepHistograms, tt.want[o.Name].Phases
				if info.Name != want.Name || info.Provider != want.Provider || info.Grant != want.Grant ||
					info.StepHistograms != want.StepHistograms || info.Phases != want.Phases {
					t.Errorf("org %s: Info() = %+v, want %+v", o.Name, info, want)
				}
			}
		})
	}
}

// Org.Info shadows checks.Target's Info, so callers holding an Org (the
// agent) get the settings without knowing about them.
func TestOrgInfoCarriesMetricsSettings(t *testing.T) {
	o := Org{Target: checks.Target{Name: "a", Provider: checks.ProviderGeneric, Grant: checks.Grant{Type: checks.GrantClientCredentials},
		Labels: map[string]string{"team": "crm"}}, Metrics: Metrics{Phases: true}}
	info := o.Info()
	if info.Name != "a" || info.Provider != checks.ProviderGeneric || info.Grant != checks.GrantClientCredentials ||
		info.Labels["team"] != "crm" || info.StepHistograms || !info.Phases {
		t.Errorf("Info() = %+v", info)
	}
}
