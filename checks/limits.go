package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LimitsAPIVersion is the REST API version of the limits probe; any recent
// version serves /limits.
const LimitsAPIVersion = "v62.0"

// identityScopes reach Salesforce's identity service (userinfo and the
// identity URL); "full" reaches everything. A token with none of them,
// such as one with only api and refresh_token, is refused by userinfo
// though it works.
var identityScopes = []string{"id", "openid", "profile", "email", "address", "phone", "full"}

// reachesIdentity reports whether a token's scope reaches userinfo. An
// unknown (empty) scope is taken to: password-grant session ids carry none
// and reach everything.
func reachesIdentity(scope string) bool {
	if scope == "" {
		return true
	}
	for _, s := range strings.Fields(scope) {
		if slices.Contains(identityScopes, s) {
			return true
		}
	}
	return false
}

// restScopes reach the REST API: "api", or "full", which includes it. A
// token with neither (only chatter_api, web, refresh_token, an identity
// scope...) is refused by the REST API though it works: 401
// INVALID_SESSION_ID "This session is not valid for use with the REST API",
// the very answer of a dead session.
var restScopes = []string{"api", "full"}

// reachesREST reports whether a token's scope reaches the REST API; an
// unknown (empty) scope is taken to, as in reachesIdentity.
func reachesREST(scope string) bool {
	if scope == "" {
		return true
	}
	for _, s := range strings.Fields(scope) {
		if slices.Contains(restScopes, s) {
			return true
		}
	}
	return false
}

// APIRequests is the org's daily API request allowance, as the REST API's
// /limits answered it (DailyApiRequests).
type APIRequests struct {
	Max       int64 `json:"max"`
	Remaining int64 `json:"remaining"`
}

// limitsURL is the URL of the REST API's limits resource when a Salesforce
// org's second witness must be the REST API rather than userinfo: the
// token's scope does not reach the identity service. "" otherwise.
func (c *Checker) limitsURL(r *run) string {
	t := &c.target
	if t.Provider != ProviderSalesforce || reachesIdentity(r.res.Token.Scope) || !reachesREST(r.res.Token.Scope) {
		return ""
	}
	base := r.res.Token.InstanceURL
	if base == "" {
		base = t.URL
	}
	if base == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/services/data/" + LimitsAPIVersion + "/limits"
}

// probeLimits calls GET {instance_url}/services/data/vNN.N/limits with the
// token, which needs only the api scope, and reads it as the second
// witness: 200 the token works, 401 (INVALID_SESSION_ID) it is dead, 403
// the token is known but refused this call (API not enabled for the user
// or org), REQUEST_LIMIT_EXCEEDED tells nothing. From a 200 it keeps the
// DailyApiRequests allowance.
func (c *Checker) probeLimits(ctx context.Context, r *run, token, target string) probeResult {
	rq := request{step: StepProbe, method: http.MethodGet, url: target,
		header: http.Header{"Authorization": {"Bearer " + token}},
		sent:   []string{"Authorization: Bearer (the token): the REST API, as the token's scope " + scopeWords(r.res.Token.Scope) + " does not reach userinfo"}, credentials: true}
	resp, sr, err := c.do(ctx, rq)
	step := r.add(sr)
	if err != nil {
		return probeResult{*step, witnessInconclusive}
	}
	if e := classifyHTTP(resp); e != nil {
		step.Outcome, step.Detail = e.outcome, e.detail
		return probeResult{*step, witnessInconclusive}
	}
	if code := authenticatedRefusal(resp); code != "" {
		// The REST API knew the token and refused only this resource: the
		// token works; /limits needs View Setup and Configuration, which a
		// least-privilege integration user lacks.
		step.Detail = fmt.Sprintf("answered %d %s: the token works; /limits needs the user's View Setup and "+
			"Configuration permission", resp.status, code)
		c.noteLimitInfo(r, step, resp.header)
		return probeResult{*step, witnessAccepted}
	}
	if resp.status >= 400 {
		w := judgeRefusal(resp)
		if w == witnessRefused && resp.status == http.StatusForbidden {
			// The REST API answers a dead session 401; a 403 is about this
			// call (API_DISABLED_FOR_ORG, INSUFFICIENT_ACCESS): the token is known.
			w = witnessForbidden
		}
		step.Detail = fmt.Sprintf("answered %d", resp.status) + rejection(resp)
		switch w {
		case witnessInconclusive:
			step.Outcome = OutcomeUnexpectedStatus
			if oe := resp.oauthError(); oe != nil && strings.Contains(strings.ToUpper(oe.Code), "LIMIT_EXCEEDED") {
				step.Outcome = OutcomeRateLimited
				// The answer's Sforce-Limit-Info tells the allowance; without
				// it, "TotalRequests" means none of the Max the last answer
				// gave remains (the metric and the warning say so rather
				// than going blank).
				if !c.noteLimitInfo(r, step, resp.header) && c.apiMax > 0 && strings.Contains(oe.Description, "TotalRequests") {
					r.res.APIRequests = &APIRequests{Max: c.apiMax, Remaining: 0}
				}
			}
		default:
			step.Outcome = OutcomeResourceRejected
		}
		return probeResult{*step, w}
	}
	step.Detail = fmt.Sprintf("answered %d: the token works", resp.status)
	if a, ok := parseLimits(resp.body); ok {
		r.res.APIRequests = &a
		c.apiMax = a.Max
		step.Detail += fmt.Sprintf(" (DailyApiRequests: %d of %d remaining)", a.Remaining, a.Max)
	} else if !c.noteLimitInfo(r, step, resp.header) {
		step.Detail += " (no DailyApiRequests in the answer)"
	}
	return probeResult{*step, witnessAccepted}
}

// authenticatedRefusal is the error code of a REST API answer that refused
// the resource after accepting the token (403 INSUFFICIENT_ACCESS, 404
// NOT_FOUND, in Salesforce's error array); "" for any other answer,
// including those that refuse the token or the API itself
// (INVALID_SESSION_ID, API_DISABLED_FOR_ORG, API_CURRENTLY_DISABLED).
func authenticatedRefusal(resp *response) string {
	if resp.status != http.StatusForbidden && resp.status != http.StatusNotFound {
		return ""
	}
	oe := resp.oauthError()
	if oe == nil {
		return ""
	}
	switch oe.Code {
	case "INSUFFICIENT_ACCESS", "NOT_FOUND":
		return oe.Code
	}
	return ""
}

// noteLimitInfo keeps the daily API allowance from the Sforce-Limit-Info
// header ("api-usage=USED/MAX"), which every REST API answer carries, when
// the body gave none; it reports whether it did.
func (c *Checker) noteLimitInfo(r *run, step *StepResult, h http.Header) bool {
	a, ok := parseLimitInfo(h.Get("Sforce-Limit-Info"))
	if !ok {
		return false
	}
	r.res.APIRequests = &a
	c.apiMax = a.Max
	step.Detail += fmt.Sprintf(" (Sforce-Limit-Info: %d of %d daily API requests remaining)", a.Remaining, a.Max)
	return true
}

// parseLimitInfo reads "api-usage=USED/MAX" from a Sforce-Limit-Info value
// such as "api-usage=10018/100000; per-app-api-usage=...".
func parseLimitInfo(v string) (APIRequests, bool) {
	for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' }) {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "api-usage") {
			continue
		}
		u, m, ok := strings.Cut(strings.TrimSpace(val), "/")
		if !ok {
			return APIRequests{}, false
		}
		used, err1 := strconv.ParseInt(strings.TrimSpace(u), 10, 64)
		limit, err2 := strconv.ParseInt(strings.TrimSpace(m), 10, 64)
		if err1 != nil || err2 != nil || used < 0 || limit < 0 {
			return APIRequests{}, false
		}
		return APIRequests{Max: limit, Remaining: max(limit-used, 0)}, true
	}
	return APIRequests{}, false
}

// parseLimits reads DailyApiRequests from a /limits answer.
func parseLimits(body []byte) (APIRequests, bool) {
	var v struct {
		Daily *struct {
			Max       *int64 `json:"Max"`
			Remaining *int64 `json:"Remaining"`
		} `json:"DailyApiRequests"`
	}
	if json.Unmarshal(body, &v) != nil || v.Daily == nil || v.Daily.Max == nil || v.Daily.Remaining == nil ||
		*v.Daily.Max < 0 || *v.Daily.Remaining < 0 {
		return APIRequests{}, false
	}
	return APIRequests{Max: *v.Daily.Max, Remaining: *v.Daily.Remaining}, true
}

// noWitness is why a Salesforce token has no resource to witness it: its
// scope reaches neither userinfo nor the REST API, both of which would
// refuse it as they refuse a dead token. "" when one of them is reachable.
func (c *Checker) noWitness(r *run) string {
	scope := r.res.Token.Scope
	if c.target.Provider != ProviderSalesforce || reachesIdentity(scope) || reachesREST(scope) {
		return ""
	}
	return "no resource call: the token's scope " + scopeWords(scope) + " reaches neither userinfo (id, openid, profile, " +
		"email, address, phone or full) nor the REST API (api or full), and both refuse such a token as they refuse a " +
		"dead one; add api to the connected app's scopes, or set probe to a URL the token may call"
}

func scopeWords(scope string) string {
	if scope == "" {
		return "(none)"
	}
	return "\"" + scope + "\""
}

// How close each of what orgWarnings watches must come to be named, as the
// shipped rules warn (TokenSigningCertificateExpiresSoon,
// TokenRefreshTokenExpiresSoon, TokenAPIRequestsLow).
const (
	SigningCertificateWarning = 30 * 24 * time.Hour
	RefreshTokenWarning       = 14 * 24 * time.Hour
	APIRequestsWarning        = 0.1
)

// orgWarnings names what is about to break the org whatever this check's
// outcome: the signing certificate or the refresh token expiring soon, the
// daily API allowance running out. It is added to the explanation, which
// the status page, diagnose and the API show; "" when nothing is close.
func orgWarnings(res *Result, now time.Time) string {
	var b strings.Builder
	days := func(t time.Time) string {
		d := t.Sub(now)
		if d < 48*time.Hour {
			return d.Round(time.Minute).String()
		}
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	if exp := res.SigningCertExpiry; !exp.IsZero() && exp.Sub(now) < SigningCertificateWarning {
		fmt.Fprintf(&b, " Warning: the signing certificate (grant.certificate_file) expires at %s, in %s; then every "+
			"login fails: upload a new certificate to the connected app and configure its key.", exp.UTC().Format(time.RFC3339), days(exp))
	}
	if exp := res.RefreshTokenExpiry; !exp.IsZero() && exp.Sub(now) < RefreshTokenWarning {
		fmt.Fprintf(&b, " Warning: the refresh token expires at %s, in %s, under grant.refresh_token_policy; "+
			"re-authorize before then.", exp.UTC().Format(time.RFC3339), days(exp))
	}
	if a := res.APIRequests; a != nil && a.Max > 0 && float64(a.Remaining) < APIRequestsWarning*float64(a.Max) {
		fmt.Fprintf(&b, " Warning: %d of the org's %d daily API requests remain (%d%%); at 0 every integration of the "+
			"org gets REQUEST_LIMIT_EXCEEDED.", a.Remaining, a.Max, a.Remaining*100/a.Max)
	}
	return b.String()
}
