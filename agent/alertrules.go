package agent

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// primaryAlert is the alert a check's outcome belongs to; "" for ok. It
// reads Alerts: the alert that names the outcome, else the alert of the
// first step that failed (StepNone when none did).
func primaryAlert(res *checks.Result) string {
	if res.Outcome == checks.OutcomeOK {
		return ""
	}
	for _, d := range Alerts {
		if slices.Contains(d.Outcomes, res.Outcome) {
			return d.Name
		}
	}
	step := res.FailedStep()
	for _, d := range Alerts {
		if slices.Contains(d.FailedSteps, step) {
			return d.Name
		}
	}
	return AlertAcquisitionFailed
}

// stepOK reports whether the step ran and did its part.
func stepOK(res *checks.Result, step checks.Step) bool {
	s := res.Step(step)
	return s != nil && !s.Skipped && s.Outcome == checks.OutcomeOK
}

// introspectionSkipped reports whether the check ran no introspection
// because none is configured or discovered (any more, after a reload): the
// introspection alerts are not watched, so a left-over one resolves, as
// TokenExpiresSoon does outside token_mode reuse.
func introspectionSkipped(res *checks.Result) bool {
	s := res.Step(checks.StepIntrospect)
	return s != nil && s.Skipped
}

// evaluate says what res tells about the alert name of org oa: bad, good,
// or nothing (known false) when the check did not get far enough.
func (a *alerter) evaluate(name string, oa *orgAlerts, res *checks.Result, now time.Time) verdict {
	switch name {
	case AlertExpiresSoon:
		return a.expiresSoon(oa, res, now)
	case AlertSigningCertificateExpiresSoon:
		return a.signingCertificate(oa, res, now)
	}
	d := Alert(name)
	v := verdict{reason: res.Outcome, explanation: res.Explanation, fix: res.Fix}
	v.bad = primaryAlert(res) == name
	v.known = v.bad || d.Good == nil || d.Good(res)
	v.summary = agentText(d.Summary, oa.info.Name, res.Outcome, "")
	if v.fix == "" {
		v.fix = agentText(d.Fix, oa.info.Name, res.Outcome, "")
		if strings.Contains(v.fix, "{{") {
			// A template only Prometheus can fill in (TokenIntrospectionInactive's).
			v.fix = "Run tokenwatch diagnose --org " + oa.info.Name + " for the outcome and its fix."
		}
	}
	return v
}

// expiresSoon is TokenExpiresSoon: in token_mode reuse, a working kept
// token whose exp is closer than expires_soon_threshold.
func (a *alerter) expiresSoon(oa *orgAlerts, res *checks.Result, now time.Time) verdict {
	threshold := a.cfg.ExpiresSoonThreshold
	if oa.tokenMode != checks.TokenModeReuse || threshold <= 0 {
		// Not watched (any more, after a reload): clears a left-over alert.
		return verdict{known: true}
	}
	alive := slices.Contains(expiresSoonAlive, res.Outcome)
	exp := res.Token.Expiry
	if !alive || exp.IsZero() {
		return verdict{}
	}
	left := exp.Sub(now)
	d := Alert(AlertExpiresSoon)
	return verdict{
		known:   true,
		bad:     left < threshold,
		reason:  res.Outcome,
		summary: agentText(d.Summary, oa.info.Name, res.Outcome, left.Round(time.Second).String()),
		explanation: fmt.Sprintf("The kept token (token_mode reuse) expires at %s, in %s, less than expires_soon_threshold %s (exp from %s).",
			exp.UTC().Format(time.RFC3339), left.Round(time.Second), threshold, res.Token.ExpirySource),
		fix: agentText(d.Fix, oa.info.Name, res.Outcome, left.Round(time.Second).String()),
	}
}

// annotations describe the alert with the numbers of its latest bad check.
func (a *alerter) annotations(oa *orgAlerts, st *alertState) map[string]string {
	checksWord := "checks"
	if st.bad == 1 {
		checksWord = "check"
	}
	description := fmt.Sprintf("%d consecutive bad %s of org %s since %s (alerting after %d); the latest ended in %s. %s",
		st.bad, checksWord, oa.info.Name, st.firstBad.UTC().Format(time.RFC3339), a.cfg.FailureThreshold, st.seen.reason, st.seen.explanation)
	return map[string]string{
		"summary":     st.seen.summary,
		"description": description,
		"fix":         st.seen.fix,
		"runbook_url": runbookURL(st.name),
	}
}

// runbookURL is the runbook_url annotation of the named alert; "" for a
// name no longer defined (an alert read back from an older store).
func runbookURL(name string) string {
	if d := Alert(name); d != nil {
		return d.RunbookURL()
	}
	return ""
}

// GeneratorURL is the generatorURL of an org's alerts: the org's row on the
// status page under externalURL (--web.external-url); "" without one.
func GeneratorURL(externalURL, org string) string {
	if externalURL == "" {
		return ""
	}
	return strings.TrimRight(externalURL, "/") + "/#" + (&url.URL{Fragment: "org-" + org}).EscapedFragment()
}

// signingCertificate is TokenSigningCertificateExpiresSoon: the certificate
// of the jwt_bearer key (grant.certificate_file) expires within
// alerting.signing_certificate_threshold. The certificate's expiry is a
// fact of the configuration, so every check tells, whatever its outcome.
func (a *alerter) signingCertificate(oa *orgAlerts, res *checks.Result, now time.Time) verdict {
	threshold := a.cfg.SigningCertificateThreshold
	exp := res.SigningCertExpiry
	if threshold <= 0 || exp.IsZero() {
		// Not watched (any more, after a reload): clears a left-over alert.
		return verdict{known: true}
	}
	left := exp.Sub(now)
	d := Alert(AlertSigningCertificateExpiresSoon)
	in := left.Round(time.Hour).String()
	return verdict{
		known:   true,
		bad:     left < threshold,
		reason:  res.Outcome,
		summary: agentText(d.Summary, oa.info.Name, res.Outcome, in),
		explanation: fmt.Sprintf("The certificate of the jwt_bearer key in grant.certificate_file expires at %s, in %s, "+
			"less than alerting.signing_certificate_threshold %s; on that day every login of the org fails.",
			exp.UTC().Format(time.RFC3339), in, threshold),
		fix: agentText(d.Fix, oa.info.Name, res.Outcome, in),
	}
}
