package agent

import (
	"fmt"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// expiresSoonFix is the advice of TokenExpiresSoon.
const expiresSoonFix = "A kept token is replaced by a new one at the first check after it dies, so this alone breaks " +
	"nothing; if it keeps coming back, the token lives shorter than expected: check the session timeout (Salesforce: " +
	"the connected app's Timeout Value and Setup > Session Settings) or the server's token lifetime. " +
	"alerting.expires_soon_threshold: 0s turns this alert off."

// primaryAlert is the alert a check's outcome belongs to; "" for ok.
func primaryAlert(res *checks.Result) string {
	switch res.Outcome {
	case checks.OutcomeOK:
		return ""
	case checks.OutcomeIntrospectionNotPermitted, checks.OutcomeTokenInactive, checks.OutcomeTokenInvalidatedEarly:
		return AlertIntrospectionInactive
	case checks.OutcomeSignatureMismatch:
		return AlertSignatureMismatch
	case checks.OutcomeExpectationFailed:
		return AlertExpectationFailed
	case checks.OutcomeIntrospectionUnauthorized, checks.OutcomeIntrospectionError:
		return AlertIntrospectionFailed
	case checks.OutcomeClientRejected, checks.OutcomeGrantRejected, checks.OutcomeClockSkew, checks.OutcomeDiscoveryFailed:
		return AlertAcquisitionFailed
	case checks.OutcomeResourceRejected, checks.OutcomeRevokeFailed:
		return AlertCheckFailing
	}
	// Transport, TLS, server and protocol failures: the step that failed decides.
	for _, s := range res.Steps {
		if s.Skipped || s.Outcome == checks.OutcomeOK {
			continue
		}
		switch s.Step {
		case checks.StepToken:
			return AlertAcquisitionFailed
		case checks.StepIntrospect:
			return AlertIntrospectionFailed
		default:
			return AlertCheckFailing
		}
	}
	// Failed before any request: discovery, or building the token request.
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
	org := oa.info.Name
	v := verdict{reason: res.Outcome, explanation: res.Explanation, fix: res.Fix}
	v.bad = primaryAlert(res) == name
	switch name {
	case AlertIntrospectionInactive:
		// Only an active answer, or introspection no longer run, clears it:
		// a check that failed before introspection cannot tell.
		v.known = v.bad || (res.Token.Active != nil && *res.Token.Active) || introspectionSkipped(res)
		v.summary = fmt.Sprintf("Introspection says the token of org %s is inactive (%s)", org, res.Outcome)
	case AlertAcquisitionFailed:
		v.known = v.bad || stepOK(res, checks.StepToken)
		v.summary = fmt.Sprintf("Org %s cannot obtain a token (%s)", org, res.Outcome)
	case AlertIntrospectionFailed:
		v.known = v.bad || stepOK(res, checks.StepIntrospect) || introspectionSkipped(res)
		v.summary = fmt.Sprintf("Introspection for org %s fails (%s)", org, res.Outcome)
	case AlertSignatureMismatch:
		v.known = v.bad || stepOK(res, checks.StepToken)
		v.summary = fmt.Sprintf("The token response of org %s carries a signature that does not match the client secret", org)
	case AlertExpectationFailed:
		// Expectations are checked once the token proved to work.
		v.known = v.bad || res.Outcome == checks.OutcomeOK || res.Outcome == checks.OutcomeRevokeFailed
		v.summary = fmt.Sprintf("The token of org %s breaks the org's expect: rules", org)
	case AlertCheckFailing:
		v.known = v.bad || res.Outcome == checks.OutcomeOK
		v.summary = fmt.Sprintf("The check of org %s fails (%s)", org, res.Outcome)
	case AlertExpiresSoon:
		return a.expiresSoon(oa, res, now)
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
	alive := res.Success() || res.Outcome == checks.OutcomeExpectationFailed || res.Outcome == checks.OutcomeRevokeFailed
	exp := res.Token.Expiry
	if !alive || exp.IsZero() {
		return verdict{}
	}
	left := exp.Sub(now)
	return verdict{
		known:   true,
		bad:     left < threshold,
		reason:  res.Outcome,
		summary: fmt.Sprintf("The token kept by org %s expires in %s", oa.info.Name, left.Round(time.Second)),
		explanation: fmt.Sprintf("The kept token (token_mode reuse) expires at %s, in %s, less than expires_soon_threshold %s (exp from %s).",
			exp.UTC().Format(time.RFC3339), left.Round(time.Second), threshold, res.Token.ExpirySource),
		fix: expiresSoonFix,
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
	}
}
