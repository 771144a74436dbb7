package alertmanager

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// Alertmanager's API v2 gets each alert's generatorURL (the org on the
// tokenwatch status page, from --web.external-url), as Prometheus sends
// the link to its rule.
func TestNotifySendsGeneratorURL(t *testing.T) {
	rv := &receiver{}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	n, err := New(Options{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	a := fired.Clone()
	a.GeneratorURL = "https://tokenwatch.example.com/#org-acme"
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(rv.last(t).body, &got); err != nil || len(got) != 1 {
		t.Fatalf("body: %v %s", err, rv.last(t).body)
	}
	if got[0]["generatorURL"] != a.GeneratorURL {
		t.Errorf("generatorURL = %v, want %s", got[0]["generatorURL"], a.GeneratorURL)
	}
}
