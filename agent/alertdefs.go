package agent

//go:generate go run ./internal/rulesgen

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
)

// RunbookBase is the start of every alert's runbook_url: its section of
// docs/alerting.md, whose anchor is the alertname in lower case.
const RunbookBase = "https://github.com/tokenwatch/tokenwatch/blob/main/docs/alerting.md#"

// StepNone stands in AlertDef.FailedSteps for a check that failed before
// any request (discovery, building the token request): no step failed, and
// tokenwatch_check_outcome has an empty step label.
const StepNone checks.Step = ""

// AlertDef is one alert, defined once. The agent raises it from its checks
// (unless RulesOnly), and configs/prometheus/tokenwatch-rules.yml, generated
// from Alerts by `go generate ./agent`, fires it from the metrics: the same
// name, severity, condition, summary and runbook on both sides.
//
// The condition of an alert about a check's outcome is Outcomes and
// FailedSteps: the agent's state machine reads them from each check result
// (see primaryAlert), and the rule from the series
// tokenwatch_check_outcome{org, outcome, step} 1, which names the last
// check's outcome and the first step whose outcome was not ok.
type AlertDef struct {
	// Name is the alertname label.
	Name string
	// Severity is the severity label: SeverityCritical or SeverityWarning.
	Severity string
	// RulesOnly marks the alerts only the Prometheus rules fire: about
	// tokenwatch itself (it is down, its checks stall, a reload failed) or
	// about a trend no single check tells (latency, lifetime).
	RulesOnly bool

	// Outcomes are the failing outcomes that raise this alert, whichever
	// step failed. Each outcome belongs to at most one alert.
	Outcomes []checks.Outcome
	// FailedSteps: a failing outcome that belongs to no alert's Outcomes (a
	// transport, TLS, server or protocol failure) raises the alert of the
	// first step that failed; StepNone is a check that failed before any
	// request. Each step belongs to at most one alert.
	FailedSteps []checks.Step
	// Good says, for the agent, whether a check that is not bad for this
	// alert counts as good for it (it resolves it): only a check that got
	// far enough to tell. Nil: every check that is not bad.
	Good func(res *checks.Result) bool

	// Expr is the rule's PromQL. Empty for an alert with Outcomes or
	// FailedSteps: the rule is then generated from them, on
	// tokenwatch_check_outcome, joined with tokenwatch_org_info.
	Expr string
	// For is the rule's for: (the agent counts failure_threshold checks instead).
	For time.Duration

	// Summary is a one-line annotation, a Prometheus template. For an alert
	// the agent raises it may use only {{ $labels.org }},
	// {{ $labels.reason }} and {{ $value | humanizeDuration }}, which the
	// agent fills in itself.
	Summary string
	// Description is the rule's description annotation (a template); the
	// agent's description tells its own count of bad checks and what the
	// last check saw instead.
	Description string
	// Fix is the rule's fix annotation (a template); the agent sends the
	// fix of the check itself, the advice tokenwatch diagnose gives, and
	// this one only when the check has none.
	Fix string

	// When is the condition in words, for the table of docs/alerting.md;
	// empty for an alert with Outcomes or FailedSteps (generated).
	When string
	// Comment goes above the rule in the generated file.
	Comment string
}

// Anchor is the alert's section in docs/alerting.md.
func (d *AlertDef) Anchor() string { return strings.ToLower(d.Name) }

// RunbookURL is the runbook_url annotation.
func (d *AlertDef) RunbookURL() string { return RunbookBase + d.Anchor() }

// OutcomeBased reports whether the alert's condition is a set of outcomes
// and failed steps (its rule is generated from them).
func (d *AlertDef) OutcomeBased() bool { return len(d.Outcomes) > 0 || len(d.FailedSteps) > 0 }

// RecordingRule is a series the rules record for the alerts to read.
type RecordingRule struct {
	Record, Expr, Comment string
	// Meaning is the series in words, for docs/alerting.md.
	Meaning string
}

// The alerts the agent raises (the alertname label).
const (
	// AlertIntrospectionInactive: introspection answered inactive
	// (introspection_not_permitted, token_inactive, token_invalidated_early).
	AlertIntrospectionInactive = "TokenIntrospectionInactive"
	// AlertAcquisitionFailed: no token could be obtained (the token step or discovery failed).
	AlertAcquisitionFailed = "TokenAcquisitionFailed"
	// AlertIntrospectionFailed: introspection itself failed (refused, unreachable, malformed).
	AlertIntrospectionFailed = "IntrospectionFailed"
	// AlertSignatureMismatch: the Salesforce token response signature does not match.
	AlertSignatureMismatch = "TokenSignatureMismatch"
	// AlertExpectationFailed: the token breaks the org's expect: rules.
	AlertExpectationFailed = "TokenExpectationFailed"
	// AlertExpiresSoon: a kept token (token_mode reuse) expires within expires_soon_threshold.
	AlertExpiresSoon = "TokenExpiresSoon"
	// AlertCheckFailing: the token was obtained but the check failed after
	// it: the resource call or the revocation failed (resource_rejected,
	// revoke_failed, any failure at the probe or revoke step).
	AlertCheckFailing = "TokenCheckFailing"
	// AlertSigningCertificateExpiresSoon: grant.certificate_file expires
	// within alerting.signing_certificate_threshold.
	AlertSigningCertificateExpiresSoon = "TokenSigningCertificateExpiresSoon"
)

// Severities (the severity label).
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
)

// expiresSoonAlive are the outcomes of a check whose token works, the only
// ones whose expiry TokenExpiresSoon looks at.
var expiresSoonAlive = []checks.Outcome{checks.OutcomeOK, checks.OutcomeExpectationFailed, checks.OutcomeRevokeFailed}

// Alerts is every alert tokenwatch defines: first those the agent raises,
// in the order it evaluates them, then those only the rules fire.
var Alerts = []AlertDef{
	{
		Name:     AlertIntrospectionInactive,
		Severity: SeverityCritical,
		Outcomes: []checks.Outcome{checks.OutcomeIntrospectionNotPermitted, checks.OutcomeTokenInactive, checks.OutcomeTokenInvalidatedEarly},
		// Only an active answer, or introspection no longer run, clears it:
		// a check that failed before introspection cannot tell.
		Good: func(res *checks.Result) bool {
			return (res.Token.Active != nil && *res.Token.Active) || introspectionSkipped(res)
		},
		For:     5 * time.Minute,
		Comment: "The headline: introspection answered {\"active\": false}. It covers a dead token (token_inactive, token_invalidated_early) and a permission gap (introspection_not_permitted: the resource call with the same token worked); `reason` tells which.",
		Summary: "Introspection says the token of org {{ $labels.org }} is inactive ({{ $labels.reason }})",
		Description: `Introspection has answered {"active": false} for the token of org {{ $labels.org }} for 5 minutes or more; ` +
			`the last check's outcome is {{ $labels.reason }}. ` +
			`With introspection_not_permitted the resource call with the same token succeeded: the token works and the introspecting client may not see it. ` +
			`With token_inactive the resource call was refused too: the token is dead. ` +
			`With token_invalidated_early a kept token died before its exp.`,
		Fix: `{{ if eq $labels.reason "introspection_not_permitted" }}{{ if eq $labels.provider "salesforce" }}Enable ` +
			`"Introspect All Tokens" on the connected app that introspects, use a flow whose tokens the app may ` +
			`introspect, or set introspection.client to an app that has the setting.{{ else }}Allow the introspecting ` +
			`client to introspect this client's tokens on the authorization server, or set introspection.client to a ` +
			`client that may.{{ end }}{{ else if eq $labels.reason "token_inactive" }}The token expired, was revoked ` +
			`or its user was disabled: check the user, the session timeout and revoked sessions.{{ else if eq ` +
			`$labels.reason "token_invalidated_early" }}Something ends sessions before their timeout (an admin, a ` +
			`logout, a password change, a session policy): check the login history.{{ else }}Run tokenwatch ` +
			`diagnose --org {{ $labels.org }} for the outcome and its fix.{{ end }}`,
	},
	{
		Name:        AlertAcquisitionFailed,
		Severity:    SeverityCritical,
		Outcomes:    []checks.Outcome{checks.OutcomeClientRejected, checks.OutcomeGrantRejected, checks.OutcomeClockSkew, checks.OutcomeDiscoveryFailed},
		FailedSteps: []checks.Step{checks.StepToken, StepNone},
		Good:        func(res *checks.Result) bool { return stepOK(res, checks.StepToken) },
		For:         5 * time.Minute,
		Comment:     "No token could be obtained: the credentials were refused, or the token endpoint (or discovery) failed. Nothing that logs in with these credentials works.",
		Summary:     "Org {{ $labels.org }} cannot obtain a token ({{ $labels.reason }})",
		Description: `No check of org {{ $labels.org }} obtained a token for 5 minutes or more; the last one ended in ` +
			`{{ $labels.reason }}. client_rejected: the client id, secret or key was refused; grant_rejected: the user, ` +
			`password, assertion or refresh token was refused; refresh_token_retired: the refresh token chain is broken; ` +
			`rate_limited, clock_skew, discovery_failed, or a transport, TLS, server or protocol failure at the token endpoint.`,
		Fix: `Run tokenwatch diagnose --org {{ $labels.org }}: it shows the token request, the answer and the fix ` +
			`for {{ $labels.reason }} (docs/outcomes.md). After correcting credentials, reload tokenwatch (SIGHUP or ` +
			`POST /-/reload) to end the org's backoff.`,
	},
	{
		Name:        AlertIntrospectionFailed,
		Severity:    SeverityWarning,
		Outcomes:    []checks.Outcome{checks.OutcomeIntrospectionUnauthorized, checks.OutcomeIntrospectionError, checks.OutcomeIntrospectionStale},
		FailedSteps: []checks.Step{checks.StepIntrospect},
		Good: func(res *checks.Result) bool {
			return stepOK(res, checks.StepIntrospect) || introspectionSkipped(res)
		},
		For:     5 * time.Minute,
		Comment: "Introspection itself fails: refused, an error, unreachable or malformed. The token was obtained; whether it is active is unknown.",
		Summary: "Introspection for org {{ $labels.org }} fails ({{ $labels.reason }})",
		Description: `Introspection of the token of org {{ $labels.org }} has failed for 5 minutes or more; the last check ` +
			`ended in {{ $labels.reason }}: the endpoint refused the introspecting client (introspection_unauthorized), ` +
			`answered an error (introspection_error), or failed at the transport, TLS, server or protocol level. The token ` +
			`was obtained; whether it is active is unknown.`,
		Fix: `Run tokenwatch diagnose --org {{ $labels.org }}: it shows the introspection request and answer. Check ` +
			`introspection_url and the credentials of introspection.client (or client) and its auth_method.`,
	},
	{
		Name:     AlertSignatureMismatch,
		Severity: SeverityCritical,
		Outcomes: []checks.Outcome{checks.OutcomeSignatureMismatch},
		Good:     func(res *checks.Result) bool { return stepOK(res, checks.StepToken) },
		For:      5 * time.Minute,
		Comment:  "Salesforce signs its token responses with the client secret; this one does not match.",
		Summary:  "The token response of org {{ $labels.org }} carries a signature that does not match the client secret",
		Description: `For 5 minutes or more the token responses of org {{ $labels.org }} carry a signature ` +
			`(HMAC-SHA256 of id and issued_at) that the configured client secret does not reproduce.`,
		Fix: `Check client.secret: after a consumer secret rotation update it here. If it is right, something ` +
			`altered the response in transit.`,
	},
	{
		Name:     AlertExpectationFailed,
		Severity: SeverityWarning,
		Outcomes: []checks.Outcome{checks.OutcomeExpectationFailed},
		// Expectations are checked once the token proved to work.
		Good: func(res *checks.Result) bool {
			return res.Outcome == checks.OutcomeOK || res.Outcome == checks.OutcomeRevokeFailed
		},
		For:     5 * time.Minute,
		Comment: "The token works but breaks the org's expect: rules.",
		Summary: "The token of org {{ $labels.org }} breaks the org's expect: rules",
		Description: `For 5 minutes or more the token of org {{ $labels.org }} works but breaks the org's expect: rules ` +
			`(min_lifetime, scope_includes, username, client_id).`,
		Fix: `An auth setting changed: run tokenwatch diagnose --org {{ $labels.org }} to see which rule broke and by ` +
			`how much, and compare with the expect: block (session timeout, granted scopes, run-as user, client).`,
	},
	{
		Name:     AlertExpiresSoon,
		Severity: SeverityWarning,
		// The agent: expiresSoon (token_mode reuse, expires_soon_threshold).
		Expr: perOrg(fmt.Sprintf(`(
    (
        tokenwatch_token_expiry_timestamp_seconds - time() < %g
      and
        tokenwatch_check_last_run_timestamp_seconds - tokenwatch_token_issued_timestamp_seconds > 300
    )
  + on (org, instance, job) group_left (reason)
    0 * label_replace(tokenwatch_check_outcome{outcome=~"%s"}, "reason", "$1", "outcome", "(.+)")
)`, configs.DefaultExpiresSoonThreshold.Seconds(), outcomeRegexp(expiresSoonAlive)), "reason"),
		For: 2 * time.Minute,
		When: fmt.Sprintf("a working kept token's `exp` is closer than %s (the agent: `token_mode: reuse` and "+
			"`alerting.expires_soon_threshold`; the rule: a token issued more than 5 minutes before the check that saw it)",
			model.Duration(configs.DefaultExpiresSoonThreshold)),
		Comment: fmt.Sprintf("Only for a kept token (token_mode: reuse): one issued more than 5 minutes before the check that "+
			"saw it, and working (the last outcome %s). A fresh token is minted on every check, so its remaining "+
			"life says nothing. The threshold is the agent's default alerting.expires_soon_threshold.",
			strings.Join(outcomeStrings(expiresSoonAlive), ", ")),
		Summary: "The kept token of org {{ $labels.org }} expires in {{ $value | humanizeDuration }}",
		Description: fmt.Sprintf(`The token tokenwatch keeps for org {{ $labels.org }} expires in {{ $value | humanizeDuration }}, `+
			`less than the %s threshold. On Salesforce the session's expiry slides with use, so a kept token that keeps `+
			`being checked should not get close to its end.`, model.Duration(configs.DefaultExpiresSoonThreshold)),
		Fix: `A kept token is replaced by a new one at the first check after it dies, so this alone breaks nothing; ` +
			`if it keeps coming back, the token lives shorter than expected: check the session timeout (Salesforce: the ` +
			`connected app's Timeout Value and Setup > Session Settings), the server's token lifetime or, with a refresh ` +
			`token, its refresh token policy. alerting.expires_soon_threshold: 0s turns the agent's alert off.`,
	},
	{
		Name:        AlertCheckFailing,
		Severity:    SeverityWarning,
		Outcomes:    []checks.Outcome{checks.OutcomeResourceRejected, checks.OutcomeRevokeFailed},
		FailedSteps: []checks.Step{checks.StepProbe, checks.StepRevoke},
		Good:        func(res *checks.Result) bool { return res.Outcome == checks.OutcomeOK },
		For:         5 * time.Minute,
		Comment:     "The token was obtained (and, when introspection runs, said active), but the check failed after it: the resource call or the revocation.",
		Summary:     "The check of org {{ $labels.org }} fails ({{ $labels.reason }})",
		Description: `For 5 minutes or more the checks of org {{ $labels.org }} obtained a token but failed after it; the ` +
			`last one ended in {{ $labels.reason }}: the resource call with the token was refused (resource_rejected), ` +
			`revoking the token failed (revoke_failed: minted tokens stay valid until they expire), or a transport, TLS, ` +
			`server or protocol failure at the probe or revoke step.`,
		Fix: `Run tokenwatch diagnose --org {{ $labels.org }}: it shows the failing step and the fix for ` +
			`{{ $labels.reason }}. For resource_rejected check the user's API permission, the token's scope and the ` +
			`probe URL; for revoke_failed, revocation_url and the client's permission to revoke.`,
	},

	{
		Name:     AlertSigningCertificateExpiresSoon,
		Severity: SeverityWarning,
		// The agent: signingCertificate (alerting.signing_certificate_threshold).
		Expr: perOrg(fmt.Sprintf(`(tokenwatch_signing_certificate_expiry_timestamp_seconds - time() < %g * 86400)`,
			configs.DefaultSigningCertificateThreshold.Hours()/24)),
		For: time.Hour,
		When: fmt.Sprintf("the certificate of the org's jwt_bearer key (`grant.certificate_file`) expires in less than %s "+
			"(the agent: `alerting.signing_certificate_threshold`)", model.Duration(configs.DefaultSigningCertificateThreshold)),
		Comment: "The connected app's certificate (grant.certificate_file) expires within 30 days: on that day the JWT bearer flow stops, and Salesforce sends no warning. The threshold is the agent's default alerting.signing_certificate_threshold; change 30 in this rule to warn earlier or later.",
		Summary: `The signing certificate of org {{ $labels.org }} expires in {{ $value | humanizeDuration }}`,
		Description: `The certificate uploaded to the connected app of org {{ $labels.org }} for its JWT bearer key ` +
			`(grant.certificate_file) expires in {{ $value | humanizeDuration }}, less than 30 days. From then on every ` +
			`login fails (invalid_grant), and Salesforce sends no warning.`,
		Fix: `Make a new key and certificate, upload the certificate to the connected app (Edit > Use digital ` +
			`signatures; the old one keeps working until replaced), then set grant.private_key_file and ` +
			`grant.certificate_file to the new pair and reload tokenwatch.`,
	},
	// Only the rules fire these.
	{
		Name:      "TokenCheckStale",
		Severity:  SeverityWarning,
		RulesOnly: true,
		Expr: `tokenwatch_org_info
* on (org, instance, job) group_left ()
(
    (
        time() - tokenwatch_check_last_run_timestamp_seconds
      >
        (
            clamp_min(3 * org:tokenwatch_check_interval_seconds:avg1d, 300)
          or
            3600 + 0 * tokenwatch_check_last_run_timestamp_seconds
        )
    )
  unless on (org, instance, job)
    tokenwatch_check_backoff_until_timestamp_seconds
)
or on (org, instance, job)
(
    0 * tokenwatch_org_info
  unless on (org, instance, job)
    tokenwatch_check_last_run_timestamp_seconds
)`,
		For:     10 * time.Minute,
		When:    "no check finished for 3 x the org's interval (at least 5m), or ever; not while the org backs off after a rejected login",
		Comment: "No check of the org finished for three times its usual interval (at least 5 minutes), or for an hour when no interval is known yet; or the org was configured and none of its checks finished (value 0), although a new org is checked right after it is added. An org that backs off after a rejected login is not stale: it waits on purpose, and its failure alerts keep firing.",
		Summary: `No check of org {{ $labels.org }} finished {{ if eq $value 0.0 }}since it was configured{{ else }}for {{ $value | humanizeDuration }}{{ end }}`,
		Description: `{{ if eq $value 0.0 }}Org {{ $labels.org }} has been configured for 10 minutes or more and none ` +
			`of its checks has finished.{{ else }}The last check of org {{ $labels.org }} finished ` +
			`{{ $value | humanizeDuration }} ago, more than three times its usual interval.{{ end }} ` +
			`The agent is up but does not get to this org.`,
		Fix: `Look for the org in the agent's log; check tokenwatch_check_queue_wait_seconds (too many orgs ` +
			`for max_concurrent_checks), the org's schedule and timeout.`,
	},
	{
		Name:      "TokenwatchDown",
		Severity:  SeverityCritical,
		RulesOnly: true,
		Expr: `up{job="tokenwatch"} == 0
or
absent(up{job="tokenwatch"})`,
		For:     5 * time.Minute,
		When:    "`up{job=\"tokenwatch\"} == 0`, or no such target at all",
		Summary: `tokenwatch {{ with $labels.instance }}at {{ . }} {{ end }}is not scraped`,
		Description: `Prometheus has not scraped tokenwatch{{ with $labels.instance }} at {{ . }}{{ end }} for 5 ` +
			`minutes or more, so nothing watches the orgs' tokens and no other tokenwatch alert can fire.`,
		Fix: `Check that the tokenwatch process runs (its log, the service manager) and that Prometheus ` +
			`reaches its /metrics (the scrape job "tokenwatch", TLS and basic auth of --web.config.file).`,
	},
	{
		Name:      "TokenStepLatencyHigh",
		Severity:  SeverityWarning,
		RulesOnly: true,
		Expr: `org_step:tokenwatch_step_last_duration_seconds:p90_10m > 5
or
(
    org_step:tokenwatch_step_last_duration_seconds:p90_10m > 0.5
  and
    org_step:tokenwatch_step_last_duration_seconds:p90_10m
    > 3 * avg_over_time(org_step:tokenwatch_step_last_duration_seconds:p90_10m[1d])
)`,
		For:     15 * time.Minute,
		When:    "a step's p90 over 10m > 5s, or > 0.5s and > 3 x its 1-day average",
		Comment: "A step's 90th percentile latency near the timeout, or well above its own average of the last day (but at least half a second).",
		Summary: `The {{ $labels.step }} step of org {{ $labels.org }} is slow: p90 {{ $value | humanizeDuration }}`,
		Description: `The 90th percentile duration of the {{ $labels.step }} step of org {{ $labels.org }} over ` +
			`10 minutes is {{ $value | humanizeDuration }}{{ with printf "avg_over_time(org_step:tokenwatch_step_last_duration_seconds:p90_10m{org=%q,step=%q}[1d])" $labels.org $labels.step | query }}, ` +
			`against {{ . | first | value | humanizeDuration }} on average over the last day{{ end }}.`,
		Fix: `See which phase grew (resolve, connect, tls, processing, transfer): tokenwatch diagnose ` +
			`--org={{ $labels.org }} runs a check and prints them, /api/v1/orgs has those of the last check, and ` +
			`tokenwatch_step_phase_duration_seconds{org="{{ $labels.org }}",step="{{ $labels.step }}"} keeps them ` +
			`when the org has metrics.phases on. Processing is the server, the others the network; check the ` +
			`provider's status page.`,
	},
	{
		Name:      "TokenLifetimeShrank",
		Severity:  SeverityWarning,
		RulesOnly: true,
		Expr: perOrg(`(
    tokenwatch_token_lifetime_seconds
  < 0.75 * max_over_time(tokenwatch_token_lifetime_seconds[1d])
)`),
		For:     15 * time.Minute,
		When:    "`exp - iat` < 0.75 x its maximum over the last day",
		Comment: "The token's lifetime (exp - iat) dropped below three quarters of the longest seen in the last day, e.g. a session timeout cut from 2h to 15min. It resolves once the shorter lifetime is a day old: set expect.min_lifetime for a permanent floor.",
		Summary: `The token lifetime of org {{ $labels.org }} shrank to {{ $value | humanizeDuration }}`,
		Description: `Tokens of org {{ $labels.org }} now live {{ $value | humanizeDuration }} (exp - iat){{ with printf "max_over_time(tokenwatch_token_lifetime_seconds{org=%q}[1d])" $labels.org | query }}, ` +
			`down from {{ . | first | value | humanizeDuration }} within the last day{{ end }}.`,
		Fix: `An auth setting changed: check the session timeout of the connected app or org (Salesforce: ` +
			`Session Settings and the app's session policies) or the token lifetime on the authorization server.`,
	},
	{
		Name:      "TokenTLSCertificateExpiresSoon",
		Severity:  SeverityWarning,
		RulesOnly: true,
		Expr:      perOrg(`(tokenwatch_tls_certificate_expiry_timestamp_seconds - time() < 14 * 86400)`),
		For:       time.Hour,
		When:      "an endpoint's certificate expires in less than 14 days",
		Summary:   `A TLS certificate of the endpoints of org {{ $labels.org }} expires in {{ $value | humanizeDuration }}`,
		Description: `The first of the certificates presented by the endpoints of org {{ $labels.org }} expires in ` +
			`{{ $value | humanizeDuration }}, less than 14 days. Once it has expired, every check fails with ` +
			`tls_error.`,
		Fix: `Renew the certificate on the server, or, for a private CA, make sure the renewed chain is trusted by ` +
			`tls.ca_file.`,
	},
	{
		Name:      "TokenRefreshTokenExpiresSoon",
		Severity:  SeverityWarning,
		RulesOnly: true,
		Expr:      perOrg(`(tokenwatch_refresh_token_expiry_timestamp_seconds - time() < 14 * 86400)`),
		For:       time.Hour,
		When:      "the refresh token in use expires under `grant.refresh_token_policy` in less than 14 days",
		Comment:   "The refresh token in use expires within 14 days under the connected app's refresh token policy (grant.refresh_token_policy): when unused for the policy's period, or at its fixed end.",
		Summary:   `The refresh token of org {{ $labels.org }} expires in {{ $value | humanizeDuration }}`,
		Description: `Under its refresh token policy (grant.refresh_token_policy), the refresh token org ` +
			`{{ $labels.org }} uses expires in {{ $value | humanizeDuration }}; then every refresh fails with ` +
			`invalid_grant "expired access/refresh token" until someone re-authorizes.`,
		Fix: `Re-authorize the integration user to get a new refresh token and put it in grant.refresh_token before ` +
			`the old one expires; or relax the connected app's Refresh Token Policy (Manage > Edit Policies), and ` +
			`update grant.refresh_token_policy to match.`,
	},
	{
		Name:      "TokenAPIRequestsLow",
		Severity:  SeverityWarning,
		RulesOnly: true,
		Expr:      perOrg(`(tokenwatch_api_requests_remaining / tokenwatch_api_requests_max < 0.1)`),
		For:       15 * time.Minute,
		When:      "less than 10% of the org's daily API request allowance remains (Salesforce DailyApiRequests)",
		Comment:   "Less than a tenth of the org's daily API request allowance remains (Salesforce DailyApiRequests, read from the REST API's limits by the checks whose token has no identity scope). Once it is gone, every integration of the org gets REQUEST_LIMIT_EXCEEDED.",
		Summary:   `Org {{ $labels.org }} has {{ $value | humanizePercentage }} of its daily API requests left`,
		Description: `Only {{ $value | humanizePercentage }} of the daily API request allowance of org {{ $labels.org }} ` +
			`remains (DailyApiRequests){{ with printf "tokenwatch_api_requests_remaining{org=%q}" $labels.org | query }}: ` +
			`{{ . | first | value }} requests{{ end }}. When none remain, every API call of every integration of the org ` +
			`fails with REQUEST_LIMIT_EXCEEDED until the 24-hour window frees some.`,
		Fix: `Find the integration that spends the allowance (Setup > Company Information > API Requests, Last 24 ` +
			`Hours; the API Usage report by connected app and user), slow it down, or raise the org's allowance ` +
			`with Salesforce.`,
	},
	{
		Name:      "TokenwatchConfigReloadFailed",
		Severity:  SeverityWarning,
		RulesOnly: true,
		Expr:      `tokenwatch_config_last_reload_successful == 0`,
		For:       10 * time.Minute,
		When:      "`tokenwatch_config_last_reload_successful == 0`",
		Summary:   `tokenwatch at {{ $labels.instance }} refused its new configuration`,
		Description: `The last configuration reload of tokenwatch at {{ $labels.instance }} failed 10 minutes or ` +
			`more ago; it keeps running the previous configuration, so changes made since are not in effect.`,
		Fix: `Run tokenwatch check-config --config.file=FILE: it names every problem by its field path. ` +
			`Fix them and reload (SIGHUP or POST /-/reload).`,
	},
}

// RecordingRules are the series the rules record for the alerts above.
var RecordingRules = []RecordingRule{
	{
		Record:  "org:tokenwatch_check_interval_seconds:avg1d",
		Meaning: "average time between two finished checks of the org over the last day",
		Comment: "Average time between two finished checks of the org over the last day: the span of the finish times seen divided by the number of checks in it. Absent while fewer than two checks were seen.",
		Expr: `(
    tokenwatch_check_last_run_timestamp_seconds
  - min_over_time(tokenwatch_check_last_run_timestamp_seconds[1d])
)
/ changes(tokenwatch_check_last_run_timestamp_seconds[1d])
> 0`,
	},
	{
		Record:  "org_step:tokenwatch_step_last_duration_seconds:p90_10m",
		Meaning: "90th percentile of each step's duration in the checks of the last 10 minutes, the highest across agents",
		Comment: "90th percentile of each step's duration in the checks of the last 10 minutes: of the last check's gauge as the scrapes saw it, so each check counts for as long as it was the last one. The highest across agents checking the same org. Needs no per-org histogram.",
		Expr: `max by (org, step) (
  quantile_over_time(0.9, tokenwatch_step_last_duration_seconds[10m])
)`,
	},
}

// Alert returns the definition of the named alert, nil when there is none.
func Alert(name string) *AlertDef {
	for i := range Alerts {
		if Alerts[i].Name == name {
			return &Alerts[i]
		}
	}
	return nil
}

// AlertNames lists every alert the agent raises, in the order it evaluates them.
var AlertNames = agentAlertNames()

func agentAlertNames() []string {
	var names []string
	for _, d := range Alerts {
		if !d.RulesOnly {
			names = append(names, d.Name)
		}
	}
	return names
}

// alertSeverity is the severity label of each alert.
var alertSeverity = func() map[string]string {
	m := map[string]string{}
	for _, d := range Alerts {
		m[d.Name] = d.Severity
	}
	return m
}()

// ExplicitOutcomes lists ok and every outcome some alert names in Outcomes:
// the failing outcomes not in it are decided by the failed step.
func ExplicitOutcomes() []checks.Outcome {
	out := []checks.Outcome{checks.OutcomeOK}
	for _, d := range Alerts {
		out = append(out, d.Outcomes...)
	}
	return out
}

// OutcomeExpr is the PromQL condition of an outcome-based alert: the
// tokenwatch_check_outcome series of the orgs whose last check raises it,
// with the outcome copied to the label reason.
func (d *AlertDef) OutcomeExpr() string {
	var parts []string
	if len(d.Outcomes) > 0 {
		parts = append(parts, `tokenwatch_check_outcome{outcome=~"`+outcomeRegexp(d.Outcomes)+`"}`)
	}
	if len(d.FailedSteps) > 0 {
		steps := make([]string, len(d.FailedSteps))
		for i, s := range d.FailedSteps {
			steps[i] = string(s)
		}
		parts = append(parts, `tokenwatch_check_outcome{outcome!~"`+outcomeRegexp(ExplicitOutcomes())+
			`",step=~"`+strings.Join(steps, "|")+`"}`)
	}
	return reasonFrom(strings.Join(parts, "\n  or\n    "))
}

// Rule is the alert's PromQL expression: Expr, or for an outcome-based
// alert the generated one.
func (d *AlertDef) Rule() string {
	if d.Expr != "" || !d.OutcomeBased() {
		return d.Expr
	}
	return perOrg(d.OutcomeExpr(), "reason")
}

// perOrg joins a per-org condition with tokenwatch_org_info, so the alert
// gets every label of the org, whatever its name, and the condition's
// labels named in extra (docs/alerting.md, "The org's labels on alerts").
func perOrg(cond string, extra ...string) string {
	return "tokenwatch_org_info\n* on (org, instance, job) group_left (" + strings.Join(extra, ", ") + ")\n" + cond
}

// reasonFrom copies the outcome label of the selected series to reason.
func reasonFrom(selector string) string {
	return "label_replace(\n    " + selector + ",\n  \"reason\", \"$1\", \"outcome\", \"(.+)\"\n)"
}

func outcomeRegexp(os []checks.Outcome) string { return strings.Join(outcomeStrings(os), "|") }

func outcomeStrings(os []checks.Outcome) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = string(o)
	}
	return out
}

// agentText fills in the placeholders an alert the agent raises may use in
// its summary (AlertDef.Summary).
func agentText(template, org string, reason checks.Outcome, value string) string {
	// Called for every alert of every check: no Replacer built each time.
	if !strings.Contains(template, "{{") {
		return template
	}
	template = strings.ReplaceAll(template, "{{ $labels.org }}", org)
	template = strings.ReplaceAll(template, "{{ $labels.reason }}", string(reason))
	return strings.ReplaceAll(template, "{{ $value | humanizeDuration }}", value)
}
