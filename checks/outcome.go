package checks

// Outcome is the bounded classification of a check: the `outcome` metric
// label and the alert `reason`. Never an error string.
type Outcome string

// The outcomes. The first three names are fixed by the user-facing contract.
const (
	// OutcomeOK: token obtained, introspection active (or not configured), resource call accepted, expectations met.
	OutcomeOK Outcome = "ok"
	// OutcomeIntrospectionNotPermitted: introspection said inactive but the resource call with the same token succeeded.
	OutcomeIntrospectionNotPermitted Outcome = "introspection_not_permitted"
	// OutcomeTokenInactive: introspection said inactive and the resource call failed too (or there was no second witness).
	OutcomeTokenInactive Outcome = "token_inactive"
	// OutcomeTokenInvalidatedEarly: a kept token (token_mode reuse) died before the exp introspection last gave.
	OutcomeTokenInvalidatedEarly Outcome = "token_invalidated_early"

	OutcomeDNSError                  Outcome = "dns_error"
	OutcomeConnectError              Outcome = "connect_error"
	OutcomeTimeout                   Outcome = "timeout"
	OutcomeTLSError                  Outcome = "tls_error"
	OutcomeRedirect                  Outcome = "redirect"
	OutcomeInsecureEndpoint          Outcome = "insecure_endpoint"
	OutcomeServerError               Outcome = "server_error"
	OutcomeUnexpectedStatus          Outcome = "unexpected_status"
	OutcomeProviderDown              Outcome = "provider_unavailable"
	OutcomeMalformedResponse         Outcome = "malformed_response"
	OutcomeDiscoveryFailed           Outcome = "discovery_failed"
	OutcomeClientRejected            Outcome = "client_rejected"
	OutcomeGrantRejected             Outcome = "grant_rejected"
	OutcomeRefreshTokenRetired       Outcome = "refresh_token_retired"
	OutcomeClockSkew                 Outcome = "clock_skew"
	OutcomeRateLimited               Outcome = "rate_limited"
	OutcomeSignatureMismatch         Outcome = "signature_mismatch"
	OutcomeIntrospectionUnauthorized Outcome = "introspection_unauthorized"
	OutcomeIntrospectionError        Outcome = "introspection_error"
	OutcomeIntrospectionStale        Outcome = "introspection_stale"
	OutcomeResourceRejected          Outcome = "resource_rejected"
	OutcomeRevokeFailed              Outcome = "revoke_failed"
	OutcomeExpectationFailed         Outcome = "expectation_failed"
	OutcomeInternalError             Outcome = "internal_error"
)

// OutcomeDoc describes each outcome in one line, for documentation and the status page.
var OutcomeDoc = map[Outcome]string{
	OutcomeOK:                        "token obtained, introspection active, resource call accepted, expectations met",
	OutcomeIntrospectionNotPermitted: "introspection said inactive, but the resource call with the same token succeeded: the introspecting client may not see this token",
	OutcomeTokenInactive:             "introspection said inactive and the resource call failed too: the token is dead",
	OutcomeTokenInvalidatedEarly:     "a kept token (token_mode reuse) stopped working before its exp",
	OutcomeDNSError:                  "a host name did not resolve",
	OutcomeConnectError:              "a TCP connection was refused or reset",
	OutcomeTimeout:                   "a request did not finish within the timeout",
	OutcomeTLSError:                  "the TLS handshake or certificate verification failed",
	OutcomeRedirect:                  "an endpoint answered with a redirect; credentials are not forwarded",
	OutcomeInsecureEndpoint:          "an endpoint is plain http on a non-loopback host; credentials were not sent",
	OutcomeServerError:               "an endpoint answered 5xx",
	OutcomeUnexpectedStatus:          "an endpoint answered an HTTP error (e.g. 404) without an OAuth error: usually a wrong URL",
	OutcomeProviderDown:              "an endpoint answered with an HTML page (maintenance or outage)",
	OutcomeMalformedResponse:         "an answer was not the JSON the protocol requires (empty, truncated, too large, no access_token)",
	OutcomeDiscoveryFailed:           "the discovery document could not be read or lacks a needed endpoint",
	OutcomeClientRejected:            "the token endpoint rejected the client (invalid_client): wrong id, secret or key",
	OutcomeGrantRejected:             "the token endpoint rejected the grant (invalid_grant and other grant errors)",
	OutcomeRefreshTokenRetired:       "the server refused a refresh token that tokenwatch got from a rotation, or had already replaced: the refresh token chain is broken",
	OutcomeClockSkew:                 "an assertion was rejected and the server clock differs from ours",
	OutcomeRateLimited:               "the server answered 429 or a login/request rate limit error",
	OutcomeSignatureMismatch:         "the Salesforce token response signature does not match HMAC-SHA256(id + issued_at, client secret)",
	OutcomeIntrospectionUnauthorized: "the introspection endpoint refused the introspecting client (401)",
	OutcomeIntrospectionError:        "the introspection endpoint answered an error other than 401",
	OutcomeIntrospectionStale:        "introspection said active for a token whose exp has passed: the server's clock or cache is wrong",
	OutcomeResourceRejected:          "introspection said active but the resource call was refused",
	OutcomeRevokeFailed:              "revoking the minted token failed; tokens may pile up",
	OutcomeExpectationFailed:         "the token works but breaks an expect: rule (lifetime, scope, username, client id)",
	OutcomeInternalError:             "tokenwatch could not build the request (a bug or an unusable key)",
}

// AllOutcomes lists every outcome, in documentation order.
var AllOutcomes = []Outcome{
	OutcomeOK, OutcomeIntrospectionNotPermitted, OutcomeTokenInactive, OutcomeTokenInvalidatedEarly,
	OutcomeDNSError, OutcomeConnectError, OutcomeTimeout, OutcomeTLSError, OutcomeRedirect,
	OutcomeInsecureEndpoint, OutcomeServerError, OutcomeUnexpectedStatus, OutcomeProviderDown, OutcomeMalformedResponse,
	OutcomeDiscoveryFailed, OutcomeClientRejected, OutcomeGrantRejected, OutcomeRefreshTokenRetired, OutcomeClockSkew,
	OutcomeRateLimited, OutcomeSignatureMismatch, OutcomeIntrospectionUnauthorized,
	OutcomeIntrospectionError, OutcomeIntrospectionStale, OutcomeResourceRejected, OutcomeRevokeFailed,
	OutcomeExpectationFailed, OutcomeInternalError,
}
