package checks

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// verdict decides the outcome of a check whose token was obtained (or kept),
// from the introspection answer and the second witness, the resource call.
func (c *Checker) verdict(r *run, in *introspection, pr probeResult) {
	f := &r.res.Token
	is := r.res.Step(StepIntrospect)
	if f.Signature == SignatureMismatch {
		c.conclude(r, OutcomeSignatureMismatch,
			"The token response's signature does not match HMAC-SHA256(id + issued_at) keyed by the configured client secret.", "")
		return
	}
	if in != nil && !in.active {
		switch pr.witness {
		case witnessAccepted, witnessForbidden:
			c.conclude(r, OutcomeIntrospectionNotPermitted, fmt.Sprintf(
				`Introspection at %s answered {"active": false}, yet the resource call %s %s with the same token %s. `+
					`The token is alive; the introspecting client (%s) is not allowed to see it.`,
				is.URL, pr.Method, pr.URL, strings.TrimPrefix(pr.Detail, "answered "), c.introspectorID()), "")
		case witnessRefused:
			c.conclude(r, OutcomeTokenInactive, fmt.Sprintf(
				`Introspection at %s answered {"active": false} and the resource call %s %s %s: the token is dead.`,
				is.URL, pr.Method, pr.URL, pr.Detail), "")
		case witnessNone:
			c.conclude(r, OutcomeTokenInactive, fmt.Sprintf(
				`Introspection at %s answered {"active": false}, and no resource call was made (%s), so a dead token `+
					`cannot be told from a permission gap.`, is.URL, pr.Detail), "")
		default:
			// Without a usable second witness, a permission gap cannot be told from
			// a dead token: report what stopped the resource call instead.
			c.conclude(r, pr.Outcome, fmt.Sprintf(
				`Introspection at %s answered {"active": false}, and the resource call %s %s could not tell whether the `+
					`token works (%s: %s).`, is.URL, pr.Method, pr.URL, pr.Outcome, pr.Detail), c.probeFix(pr))
		}
		return
	}
	if is != nil && !is.Skipped && is.Outcome != OutcomeOK {
		c.conclude(r, is.Outcome, "Introspection at "+is.URL+" "+is.Detail+".", c.introspectionFix(is.Outcome))
		return
	}
	if in != nil && in.active && !in.exp.IsZero() && c.now().Sub(in.exp) > maxSkew {
		// RFC 7662 §4: the server must check expiry before it says active.
		c.conclude(r, OutcomeIntrospectionStale, fmt.Sprintf(
			"Introspection at %s said the token is active, with an exp %s in the past (%s): the server's clock is "+
				"wrong or it answers from a stale cache, so its exp cannot be trusted.",
			is.URL, c.now().Sub(in.exp).Round(time.Second), in.exp.UTC().Format(time.RFC3339)),
			"Check the authorization server's clock (NTP) and any cache in front of its introspection endpoint; "+
				"compare with this host's clock (tokenwatch_token_issued_timestamp_seconds against the check time).")
		return
	}
	switch pr.witness {
	case witnessRefused, witnessForbidden:
		what := "Introspection said the token is active, but"
		if in == nil {
			what = "The freshly obtained token was refused:"
		}
		c.conclude(r, OutcomeResourceRejected, fmt.Sprintf("%s the resource call %s %s %s.", what, pr.Method, pr.URL, pr.Detail), "")
		return
	case witnessInconclusive:
		c.conclude(r, pr.Outcome, fmt.Sprintf("The resource call %s %s failed: %s.", pr.Method, pr.URL, pr.Detail), c.probeFix(pr))
		return
	}
	if broken := c.expectations(f); len(broken) > 0 {
		c.conclude(r, OutcomeExpectationFailed, "The token works but breaks expectations: "+strings.Join(broken, "; ")+".", "")
		return
	}
	if rv := r.res.Step(StepRevoke); rv != nil && rv.Outcome != OutcomeOK {
		c.conclude(r, OutcomeRevokeFailed, fmt.Sprintf("Revoking the minted token at %s failed (%s: %s).", rv.URL, rv.Outcome, rv.Detail), "")
		return
	}
	summary := healthySummary(r.res, c.now())
	if rv := r.res.Step(StepRevoke); rv != nil && !rv.Skipped && strings.Contains(rv.Detail, "(a note, not a failure)") {
		summary += " Note: revocation " + rv.Detail + "."
	}
	c.conclude(r, OutcomeOK, summary, "")
}

// probeFix is the advice for a resource call that told nothing, where the
// outcome's standard advice is about the token endpoint: on Salesforce a
// rate-limited resource call (REQUEST_LIMIT_EXCEEDED, 429) is the org's API
// request limits, not the login rate. "" for the standard advice.
func (c *Checker) probeFix(pr probeResult) string {
	if pr.Outcome != OutcomeRateLimited || c.target.Provider != ProviderSalesforce {
		return ""
	}
	if !strings.Contains(pr.Detail, "LIMIT_EXCEEDED") {
		return "The resource call was rate limited, which says nothing about the token (logins were not refused): " +
			"check less often; Retry-After, when sent, says how long to wait."
	}
	return "The org's API request limit is used up (REQUEST_LIMIT_EXCEEDED; \"TotalRequests\" is the daily allowance, " +
		"DailyApiRequests): every integration of the org is refused until the 24-hour window frees some, and the " +
		"resource call says nothing about the token. Find the integration that spends it (Setup > Company Information " +
		"> API Requests, Last 24 Hours; the API Usage report by connected app and user), slow it down, or raise the " +
		"org's allowance with Salesforce."
}

// introspectionFix is the advice for a refused introspection whose
// introspecting client has no secret, on Salesforce: its introspection
// endpoint authenticates the connected app by consumer key and secret,
// which a JWT-bearer setup may not have configured. "" otherwise.
func (c *Checker) introspectionFix(o Outcome) string {
	cl := &c.target.Client
	if ic := c.target.Introspection.Client; ic != nil {
		cl = ic
	}
	if o != OutcomeIntrospectionUnauthorized || c.target.Provider != ProviderSalesforce || cl.Secret != "" ||
		cl.PrivateKey != nil || cl.AuthMethod == AuthTLSClientAuth {
		return ""
	}
	return "Salesforce's introspection endpoint authenticates the connected app with its consumer key and consumer " +
		"secret, and the introspecting client (" + cl.ID + ") has no secret: the JWT bearer flow does not need one, " +
		"introspection does. Set client.secret (the app's consumer secret, from Manage Consumer Details), or " +
		"introspection.client with the id and secret of an app that may introspect this token (\"Introspect All Tokens\")."
}

func (c *Checker) introspectorID() string {
	if ic := c.target.Introspection.Client; ic != nil {
		return "client id " + ic.ID
	}
	return "client id " + c.target.Client.ID
}

// expectations lists the broken expect: rules.
func (c *Checker) expectations(f *TokenFacts) []string {
	e := c.target.Expect
	var broken []string
	if e.MinLifetime > 0 {
		switch lt := f.Lifetime(); {
		case lt == 0:
			broken = append(broken, "min_lifetime is set but the token's lifetime (exp - iat) is unknown")
		case lt < e.MinLifetime:
			broken = append(broken, fmt.Sprintf("lifetime (exp - iat) is %s, below min_lifetime %s", lt.Round(time.Second), e.MinLifetime))
		}
	}
	if len(e.ScopeIncludes) > 0 {
		have := strings.Fields(f.Scope)
		var missing []string
		for _, s := range e.ScopeIncludes {
			if !slices.Contains(have, s) {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			broken = append(broken, fmt.Sprintf("scope %q lacks %s", f.Scope, strings.Join(missing, ", ")))
		}
	}
	if e.Username != "" && f.Username != e.Username {
		broken = append(broken, fmt.Sprintf("username is %q, expected %q", f.Username, e.Username))
	}
	if e.ClientID != "" && f.ClientID != e.ClientID {
		broken = append(broken, fmt.Sprintf("client_id is %q, expected %q", f.ClientID, e.ClientID))
	}
	return broken
}

func healthySummary(res *Result, now time.Time) string {
	f := res.Token
	var b strings.Builder
	if f.Minted {
		b.WriteString("Token obtained")
	} else {
		b.WriteString("Kept token still valid")
	}
	switch {
	case f.Active != nil:
		b.WriteString(", introspection active")
	default:
		b.WriteString(", no introspection")
	}
	if pr := res.Step(StepProbe); pr != nil && !pr.Skipped {
		b.WriteString(", resource call accepted")
	}
	if !f.Expiry.IsZero() {
		b.WriteString("; expires ")
		b.WriteString(f.Expiry.Format(time.RFC3339))
		b.WriteString(" (in ")
		b.WriteString(f.Expiry.Sub(now).Round(time.Second).String())
		b.WriteString(", from ")
		b.WriteString(f.ExpirySource)
		b.WriteString(")")
	} else {
		b.WriteString("; expiry unknown")
	}
	b.WriteString(".")
	return b.String()
}

// conclude sets the outcome, the explanation and the fix (the outcome's
// standard advice when fix is empty).
func (c *Checker) conclude(r *run, o Outcome, explanation, fix string) {
	r.res.Outcome = o
	r.res.Explanation = explanation
	if fix == "" {
		fix = c.fixFor(o)
	}
	r.res.Fix = fix
}

// fixFor is the standard advice for an outcome on this target's provider.
func (c *Checker) fixFor(o Outcome) string {
	sf := c.target.Provider == ProviderSalesforce
	switch o {
	case OutcomeOK:
		return ""
	case OutcomeIntrospectionNotPermitted:
		if sf {
			return `Enable "Introspect All Tokens" on the connected app that introspects (Setup > App Manager > the app > Edit > ` +
				`OAuth Policies / API settings). By default a connected app may introspect only its own tokens, and ` +
				`password-grant tokens are session ids, which only an app with "Introspect All Tokens" can introspect. ` +
				`Alternatively use a flow whose tokens the app may introspect (client_credentials or jwt_bearer), or set ` +
				`introspection.client to an app that has the setting.`
		}
		return "The introspecting client may lack permission for this token: allow it to introspect tokens issued to " +
			"this client on the authorization server, or set introspection.client to a client that may."
	case OutcomeTokenInactive:
		if sf {
			return "The token was expired, revoked or its user frozen or deactivated. Check the user in Setup, the connected " +
				"app's session timeout and Setup > Session Management; with a refresh token, re-authorize to get a new one."
		}
		return "The token was expired or revoked, or its subject disabled. Check the token lifetime and the client on the authorization server."
	case OutcomeTokenInvalidatedEarly:
		return "Something ends sessions before their timeout: an admin revoking sessions, a logout, a password change, " +
			"a session policy or IP restriction. Check the org's login history and session settings."
	case OutcomeDNSError:
		return "Check the host name in url/discovery_url/*_url (on Salesforce, the My Domain name) and the resolver."
	case OutcomeConnectError:
		return "Check that the host and port are right and reachable from here (firewall, proxy, service up)."
	case OutcomeTimeout:
		return "The server or network is slow or dropping packets; check reachability, or raise timeout if the server is just slow."
	case OutcomeTLSError:
		return "Check the server certificate (expiry, host name) and tls.ca_file / tls.server_name; an intercepting proxy needs its CA in tls.ca_file."
	case OutcomeRedirect:
		return "Point the config at the URL the server redirects to; tokenwatch never forwards credentials through a redirect."
	case OutcomeInsecureEndpoint:
		return "Use https endpoints; plain http is allowed only to loopback addresses."
	case OutcomeServerError:
		return "The authorization server failed (5xx): usually transient; check the provider's status page if it persists."
	case OutcomeUnexpectedStatus:
		return "The endpoint answered an HTTP error that is not an OAuth answer (404 and the like): check token_url, the probe URL or the org's url."
	case OutcomeProviderDown:
		return "The provider served an HTML page (maintenance or an outage page); this is the provider being down, not an auth failure."
	case OutcomeMalformedResponse:
		return "The server answered something that is not valid OAuth JSON; check the endpoint URL and any proxy in between."
	case OutcomeDiscoveryFailed:
		return "Check discovery_url, or set token_url, introspection_url, revocation_url and userinfo_url explicitly."
	case OutcomeClientRejected:
		if sf {
			return "The connected app rejected the client: check client.id (consumer key) and the secret or key; a rotated consumer secret needs updating here."
		}
		return "The server rejected the client: check client.id, the secret or key, and client.auth_method (client_secret_basic vs client_secret_post)."
	case OutcomeGrantRejected:
		return "The grant was refused; see the error description above and the matching advice."
	case OutcomeClockSkew:
		return "The server's clock and this host's clock differ by more than a minute, so assertions look expired or not yet valid: fix NTP on this host."
	case OutcomeRateLimited:
		if sf {
			return "Salesforce blocks more than 3,600 logins per user per hour: check less often, or use token_mode: reuse."
		}
		return "The server is rate limiting: check less often, or use token_mode: reuse."
	case OutcomeSignatureMismatch:
		return "Check client.secret: after a consumer secret rotation update it here. If it is right, something altered the response in transit."
	case OutcomeIntrospectionUnauthorized:
		return "The introspection endpoint refused the introspecting client: check the credentials of introspection.client " +
			"(or client), and its auth_method."
	case OutcomeIntrospectionError:
		return "The introspection endpoint returned an error; check introspection_url and introspection.token_type_hint."
	case OutcomeResourceRejected:
		return "The token is not accepted by the resource: check the user's API permission, the token's scope, and the probe URL."
	case OutcomeRevokeFailed:
		return "Revocation failed, so minted tokens stay valid until they expire: check revocation_url and the client's permission to revoke."
	case OutcomeExpectationFailed:
		return "An auth setting changed: compare with the expect: block (session timeout, granted scopes, run-as user, client)."
	case OutcomeInternalError:
		return "Check the key files configured; if they are right, this is a tokenwatch bug: report the diagnose output."
	}
	return ""
}

// tokenErrorFix maps the token endpoint's error to advice: Salesforce's
// error texts (tokenErrors) and RFC 6749 §5.2 codes; docs/outcomes.md and
// docs/salesforce.md list them.
func tokenErrorFix(t Target, o Outcome, oe *oauthError) string {
	if oe == nil {
		return ""
	}
	switch o {
	case OutcomeClockSkew:
		return ""
	case OutcomeRefreshTokenRetired:
		return "The refresh token chain is broken: the server refused the refresh token tokenwatch received in its last rotation. " +
			"Another process used the same refresh token (each chain must have one user: one tokenwatch, one shard), " +
			"the token was revoked, or the app's refresh token policy expired it. Re-authorize, put the new refresh token in " +
			"grant.refresh_token, and keep --storage.path across restarts so rotated tokens are not lost."
	}
	desc := strings.ToLower(oe.Description)
	for _, e := range tokenErrors {
		if e.code != oe.Code || (e.desc != "" && !strings.Contains(desc, e.desc)) {
			continue
		}
		if fix := e.fix(t); fix != "" {
			return fix
		}
	}
	return ""
}

// tokenError is one error a token endpoint answers, with its advice; the
// first entry whose code matches and whose desc (lower case) is in the
// error_description gives the fix. An empty desc matches any description.
type tokenError struct {
	code, desc string
	fix        func(Target) string
}

func sfOnly(fix string) func(Target) string {
	return func(t Target) string {
		if t.Provider != ProviderSalesforce {
			return ""
		}
		return fix
	}
}

func always(fix string) func(Target) string { return func(Target) string { return fix } }

const (
	fixUserInactive = "The user is frozen or deactivated: reactivate or unfreeze it in Setup > Users, or configure another " +
		"integration user (grant.username; client credentials: the connected app's Run As user)."
	fixIPRestricted = "The login is refused by the user's network or time restrictions: the profile's Login IP Ranges or its " +
		"Login Hours exclude this host or this time. Add this host's egress address to Login IP Ranges or widen Login Hours " +
		"(Setup > Profiles > the profile), or set the connected app's IP Relaxation to \"Relax IP restrictions\" " +
		"(login hours still apply)."
	fixAudience = "grant.audience (the assertion's aud) is wrong for this org: https://login.salesforce.com for production, " +
		"https://test.salesforce.com for a sandbox (*.sandbox.my.salesforce.com or test.salesforce.com), or the Experience " +
		"Cloud site URL for a site; tokenwatch derives it from url when grant.audience is unset."
)

// tokenErrors are Salesforce's token endpoint errors (their texts as
// Salesforce sends them) and RFC 6749 §5.2 codes, in match order.
var tokenErrors = []tokenError{
	{code: "invalid_client_id", fix: always("The consumer key is unknown to this org: check client.id (the connected app's " +
		"consumer key) and that url is the org the app lives in (a sandbox has its own copy of the app, with its own key).")},
	{code: "invalid_client_credentials", fix: always("The consumer secret is wrong: copy it again from the connected app " +
		"(Setup > App Manager > the app > View > Manage Consumer Details) into client.secret; after a rotation update it here.")},
	{code: "invalid_client", fix: sfOnly("The connected app refused the client: the consumer secret in client.secret is wrong " +
		"or was rotated; copy it again from Manage Consumer Details. With private_key_jwt, check client.private_key_file " +
		"against the app's certificate.")},
	{code: "inactive_user", fix: always(fixUserInactive)},
	{code: "inactive_org", fix: always("The org is locked, closed or suspended (inactive_org), so no user of it can log in: " +
		"a trial that ended, an unpaid or suspended org, or a sandbox that was deleted or is being refreshed. Check the org " +
		"with its admin or Salesforce support; check url if the org moved.")},
	{code: "invalid_grant", desc: "authentication failure", fix: func(t Target) string {
		if t.Provider == ProviderSalesforce && t.Grant.Type == GrantPassword {
			return "Check grant.username and the password, which for Salesforce is the password with the user's security token " +
				"appended. If they are right, the username-password flow may be blocked: orgs created in Summer '23 or later " +
				"block it by default (Login History shows \"Username-Password Flow Disabled\"); re-enable it or move to jwt_bearer or client_credentials."
		}
		return "Check the username and password."
	}},
	{code: "invalid_grant", desc: "invalid user credentials", fix: always("The user's credentials were refused: check " +
		"grant.username and the password (Salesforce: the password followed by the user's security token; a password " +
		"reset issues a new security token). Login History shows the reason.")},
	{code: "invalid_grant", desc: "ip restricted", fix: always(fixIPRestricted)},
	{code: "invalid_grant", desc: "inactive", fix: always(fixUserInactive)},
	{code: "invalid_grant", desc: "expired access/refresh token", fix: always("The refresh token is expired, revoked or " +
		"rotated out: the connected app's Refresh Token Policy (expire after a time, or when unused for a period) ended it, " +
		"someone revoked it (Connected Apps OAuth Usage, or the user's Approved Applications), or with rotation an older " +
		"one was used again. Re-authorize to get a new refresh token, update grant.refresh_token, and set " +
		"grant.refresh_token_policy to be warned before the policy ends the next one.")},
	{code: "invalid_grant", desc: "audience", fix: always(fixAudience)},
	{code: "invalid_grant", desc: "approved", fix: always("Pre-authorize the user for the connected app: in the app's " +
		"Manage > Edit Policies set Permitted Users to \"Admin approved users are pre-authorized\", then add the user's " +
		"profile or a permission set of the user under Profiles or Permission Sets.")},
	{code: "invalid_grant", desc: "not supported on this domain", fix: always("This flow (client credentials) is not " +
		"served on login.salesforce.com or test.salesforce.com: set url to the org's My Domain URL " +
		"(https://MYDOMAIN.my.salesforce.com, a sandbox https://MYDOMAIN--SANDBOX.sandbox.my.salesforce.com), as shown " +
		"in Setup > My Domain.")},
	{code: "invalid_grant", desc: "client credentials user", fix: always("Set a Run As user in the connected app's Client " +
		"Credentials Flow settings (Manage > Edit Policies > Client Credentials Flow), an active user with API Enabled.")},
	{code: "invalid_grant", desc: "invalid assertion", fix: always("Salesforce refused the assertion: the certificate " +
		"uploaded to the connected app (Use digital signatures) must match grant.private_key_file (grant.certificate_file " +
		"lets tokenwatch check the pair); iss is client.id (the consumer key), sub grant.username; also check this host's clock.")},
	{code: "invalid_grant", fix: func(t Target) string {
		if t.Grant.Type != GrantJWTBearer {
			return ""
		}
		return "Check the assertion: iss is client.id (the consumer key), sub the username, aud grant.audience, and that the " +
			"certificate uploaded to the app matches grant.private_key_file; also check this host's clock."
	}},
	{code: "unsupported_grant_type", fix: func(t Target) string {
		if t.Provider == ProviderSalesforce {
			return "The connected app does not allow this flow (grant.type " + t.Grant.Type + "): enable it in the app's " +
				"OAuth settings (Enable Client Credentials Flow; the JWT bearer flow needs Use digital signatures; the " +
				"username-password flow must not be blocked in Setup > OAuth and OpenID Connect Settings)."
		}
		return "The server does not allow grant.type " + t.Grant.Type + " for this client: enable it for the client."
	}},
	{code: "unauthorized_client", fix: always("The server does not allow this grant type for this client: enable it for the client (or connected app).")},
	{code: "invalid_scope", fix: always("Request only scopes the client may have (grant.scope).")},
	{code: "invalid_request", fix: always("The server found the request malformed; check grant and client settings against the server's documentation.")},
}
