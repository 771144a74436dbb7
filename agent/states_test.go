package agent

import (
	"context"
	"slices"
	"testing"

	"github.com/tokenwatch/tokenwatch/checks"
)

// stateNames lists the orgs States returns, in its order.
func stateNames(ag *Agent) []string {
	var names []string
	for _, s := range ag.States() {
		names = append(names, s.Info.Name)
	}
	return names
}

// States is the one place the exporters read the configured orgs and their
// last results from: sorted by name, nil before the first check, the org's
// current identity, nothing of a removed org, and a snapshot the caller may
// not change the agent through.
func TestStatesAreTheAgentsOrgsAndLastResults(t *testing.T) {
	sim := newSimulated(t, "b", "a", "c")
	ag := New(Options{})
	defer ag.Stop(context.Background())
	if err := ag.Apply(sim.config(t, "", "b|    labels: {team: crm}", "a")); err != nil {
		t.Fatal(err)
	}
	states := ag.States()
	if got := stateNames(ag); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("States lists %v, want [a b], sorted by name", got)
	}
	for _, s := range states {
		if s.Last != nil {
			t.Errorf("%s: last result %+v before any check, want nil", s.Info.Name, s.Last)
		}
	}
	if b := states[1].Info; b.Provider == "" || b.Grant != checks.GrantClientCredentials || b.Labels["team"] != "crm" {
		t.Errorf("b's identity %+v", b)
	}

	_, res, err := ag.ProbeOrg(context.Background(), "b", fresh)
	if err != nil || res == nil {
		t.Fatalf("probe: %v %v", res, err)
	}
	states = ag.States()
	if states[1].Last != res || states[0].Last != nil {
		t.Fatalf("after b's check: a %v, b %v; want b's result only", states[0].Last, states[1].Last)
	}
	// The snapshot is the caller's: changing it changes nothing in the agent.
	states[1].Info.Labels["team"] = "mutated"
	if got := ag.States()[1].Info.Labels["team"]; got != "crm" {
		t.Errorf("a caller changed the agent's labels to %q", got)
	}

	// A reload that changes b keeps its last result until its next check,
	// removes a and adds c.
	if err := ag.Apply(sim.config(t, "", "b|    labels: {team: billing}", "c")); err != nil {
		t.Fatal(err)
	}
	states = ag.States()
	if got := stateNames(ag); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("after the reload States lists %v, want [b c]", got)
	}
	if states[0].Last != res || states[0].Info.Labels["team"] != "billing" {
		t.Errorf("b after the reload: labels %v, last %v; want the new labels and the kept result", states[0].Info.Labels, states[0].Last)
	}
}
