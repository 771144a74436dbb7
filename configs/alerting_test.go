package configs

import (
	promconfig "github.com/prometheus/common/config"

	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

func TestAlertingDefaults(t *testing.T) {
	cfg := mustParse(t, minimalSalesforce, nil)
	want := Alerting{
		FailureThreshold:     2,
		SuccessThreshold:     1,
		ResendInterval:       time.Minute,
		ExpiresSoonThreshold: 10 * time.Minute,

		SigningCertificateThreshold: 30 * 24 * time.Hour,
	}
	if !reflect.DeepEqual(cfg.Alerting, want) {
		t.Errorf("alerting without a section = %+v, want %+v", cfg.Alerting, want)
	}

	cfg = mustParse(t, minimalSalesforce+`
alerting:
  alertmanagers:
    - url: http://127.0.0.1:9093
  webhooks:
    - url: https://hooks.example.com/tokenwatch
`, nil)
	am, wh := cfg.Alerting.Alertmanagers[0], cfg.Alerting.Webhooks[0]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"alertmanager timeout", am.Timeout, 10 * time.Second},
		{"no basic auth", am.HTTPClient.BasicAuth, (*promconfig.BasicAuth)(nil)},
		{"no bearer token", am.HTTPClient.Authorization, (*promconfig.Authorization)(nil)},
		{"proxies from the environment", am.HTTPClient.ProxyFromEnvironment, true},
		{"webhook send_resolved", wh.SendResolved, true},
		{"webhook timeout", wh.Timeout, 10 * time.Second},
		{"webhook unsigned", wh.Secret, checks.Secret("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestAlertingExplicitSettings(t *testing.T) {
	dir, _ := filepath.Abs("testdata")
	cfg := mustParse(t, minimalSalesforce+`
alerting:
  failure_threshold: 3
  success_threshold: 2
  resend_interval: 30s
  expires_soon_threshold: 0s
  alertmanagers:
    - url: https://am-1.example.com/alertmanager
      basic_auth: {username: tokenwatch, password: "${AM_PASSWORD}"}
      tls: {ca_file: client.crt, server_name: am.internal, insecure_skip_verify: true}
      timeout: 3s
    - url: http://localhost:9093
      bearer_token_file: client-secret.txt
  webhooks:
    - url: http://hooks.example.com/tokenwatch
      secret_file: client-secret.txt
      send_resolved: false
      timeout: 2s
`, []string{"AM_PASSWORD=am-password"})
	a := cfg.Alerting
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"failure_threshold", a.FailureThreshold, 3},
		{"success_threshold", a.SuccessThreshold, 2},
		{"resend_interval", a.ResendInterval, 30 * time.Second},
		{"expires_soon_threshold off", a.ExpiresSoonThreshold, time.Duration(0)},
		{"alertmanager url", a.Alertmanagers[0].URL, "https://am-1.example.com/alertmanager"},
		{"basic auth username", a.Alertmanagers[0].HTTPClient.BasicAuth.Username, "tokenwatch"},
		{"basic auth password from env", string(a.Alertmanagers[0].HTTPClient.BasicAuth.Password), "am-password"},
		{"tls ca_file resolved", a.Alertmanagers[0].HTTPClient.TLSConfig.CAFile, filepath.Join(dir, "client.crt")},
		{"tls server_name", a.Alertmanagers[0].HTTPClient.TLSConfig.ServerName, "am.internal"},
		{"tls insecure_skip_verify", a.Alertmanagers[0].HTTPClient.TLSConfig.InsecureSkipVerify, true},
		{"alertmanager timeout", a.Alertmanagers[0].Timeout, 3 * time.Second},
		{"bearer token", a.Alertmanagers[1].HTTPClient.Authorization.Type, "Bearer"},
		{"bearer token file resolved, re-read at each request", a.Alertmanagers[1].HTTPClient.Authorization.CredentialsFile, filepath.Join(dir, "client-secret.txt")},
		{"webhook over plain http (no credentials sent)", a.Webhooks[0].URL, "http://hooks.example.com/tokenwatch"},
		{"webhook HMAC key from file", a.Webhooks[0].Secret.Reveal(), "fixture-client-secret"},
		{"webhook send_resolved", a.Webhooks[0].SendResolved, false},
		{"webhook timeout", a.Webhooks[0].Timeout, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}

	// Printed in any way, the section shows no secret.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		out := fmt.Sprintf(verb, a)
		for _, secret := range []string{"am-password", "fixture-client-secret"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s of the alerting section prints a secret: %s", verb, out)
			}
		}
	}
}

// An Alertmanager without credentials may be reached over plain http on any
// host: nothing secret travels.
func TestAlertingPlainHTTPWithoutCredentials(t *testing.T) {
	cfg := mustParse(t, minimalSalesforce+`
alerting:
  alertmanagers:
    - url: http://alertmanager.monitoring.svc:9093
`, nil)
	if got := cfg.Alerting.Alertmanagers[0].URL; got != "http://alertmanager.monitoring.svc:9093" {
		t.Errorf("url = %q", got)
	}
}
