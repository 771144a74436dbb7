package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
)

// TestSigningCertificateExpiresSoon: the agent raises
// TokenSigningCertificateExpiresSoon when grant.certificate_file expires
// within alerting.signing_certificate_threshold, whatever the check's
// outcome, and resolves it once a renewed certificate is configured.
func TestSigningCertificateExpiresSoon(t *testing.T) {
	h := newAlertHarness(t, configs.Alerting{FailureThreshold: 2, SigningCertificateThreshold: 30 * 24 * time.Hour})
	expiring := func(in time.Duration) *checks.Result {
		r := healthy()
		r.SigningCertExpiry = h.clock.Now().Add(in)
		return r
	}
	h.check(expiring(40 * 24 * time.Hour))
	h.check(expiring(40 * 24 * time.Hour))
	h.expect()
	h.check(expiring(20 * 24 * time.Hour))
	h.check(expiring(20 * 24 * time.Hour))
	m := h.s.last()
	h.expect("firing TokenSigningCertificateExpiresSoon ok")
	if d := m.Alert.Annotations["description"]; !strings.Contains(d, "grant.certificate_file expires at ") ||
		!strings.Contains(d, "less than alerting.signing_certificate_threshold 720h0m0s") || m.Alert.Labels["severity"] != "warning" {
		t.Errorf("alert = %+v", m.Alert)
	}
	h.check(expiring(365 * 24 * time.Hour)) // renewed
	h.expect("resolved TokenSigningCertificateExpiresSoon ok")

	// Without grant.certificate_file, or with the alert off: never.
	h = newAlertHarness(t, configs.Alerting{FailureThreshold: 1, SigningCertificateThreshold: 30 * 24 * time.Hour})
	h.check(healthy())
	h.expect()
	h = newAlertHarness(t, configs.Alerting{FailureThreshold: 1})
	h.check(expiring(time.Hour))
	h.expect()
}
