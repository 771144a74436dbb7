package webhook

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// The payload's externalURL is the URL tokenwatch is reached under
// (--web.external-url), and each alert keeps its generatorURL, the link to
// its org on the status page.
func TestPayloadLinksBackToTokenwatch(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	const external = "https://tokenwatch.example.com/tw"
	n, err := New(Options{URL: srv.URL, ExternalURL: external})
	if err != nil {
		t.Fatal(err)
	}
	a := testAlert("acme", alerting.StatusFiring)
	a.GeneratorURL = external + "/#org-acme"
	if _, err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	var p Payload
	if err := json.Unmarshal(h.bodies[0], &p); err != nil {
		t.Fatal(err)
	}
	if p.ExternalURL != external || len(p.Alerts) != 1 || p.Alerts[0].GeneratorURL != a.GeneratorURL {
		t.Errorf("externalURL %q, alerts %+v", p.ExternalURL, p.Alerts)
	}
}
