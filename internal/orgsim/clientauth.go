package orgsim

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

const (
	jsonContentType     = "application/json;charset=UTF-8"
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	maxFormBytes        = 64 << 10
)

// oauthError is an RFC 6749 §5.2 error as Salesforce sends it.
type oauthError struct {
	status      int
	code        string
	description string
	// basic marks a failed HTTP Basic authentication, which RFC 6749
	// answers with 401 and WWW-Authenticate.
	basic bool
}

func errBadRequest(code, description string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: code, description: description}
}

func errInvalidGrant(description string) *oauthError {
	return errBadRequest("invalid_grant", description)
}

// Salesforce's error descriptions, as its token endpoint sends them
// (docs/salesforce.md lists each with its source). Those marked unverified
// are not in Salesforce's documentation or public reports; they are
// plausible and stable for tests.
const (
	descAuthFailure        = "authentication failure"
	descInactiveUser       = "inactive user"
	descInactiveOrg        = "inactive organization" // unverified: the code inactive_org is in Salesforce's older table
	descIPRestricted       = "IP restricted or invalid login hours"
	descNotOnThisDomain    = "request not supported on this domain"
	descExpiredRefresh     = "expired access/refresh token"
	descAudience           = "Audience validation failed"
	descNotApproved        = "user hasn't approved this consumer"
	descNoCCUser           = "no client credentials user enabled"
	descClientIDInvalid    = "client identifier invalid"
	descClientCredentials  = "invalid client credentials"
	descInvalidAssertion   = "invalid assertion"                      // unverified
	descAssertionExpired   = "assertion expired"                      // unverified
	descAssertionTooLong   = "assertion expiry too far in the future" // unverified
	descGrantNotSupported  = "grant type not supported"
	descMustPost           = "must use HTTP POST"
	descLoginRateExceeded  = "login rate exceeded"
	descMultipleClientAuth = "more than one client authentication method" // unverified
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.status == http.StatusUnauthorized && e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="salesforce"`)
	}
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.code, e.description}
	writeJSON(w, e.status, body)
}

// parseForm reads a form-encoded POST body (and the query string), bounded in size.
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, errBadRequest("invalid_request", "malformed request body")
	}
	return r.PostForm, nil
}

// secretEqual compares a presented secret with the app's. An empty secret
// never matches, even an app's empty one: Salesforce authenticates a
// confidential client only by its consumer secret.
func secretEqual(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// authenticateClient identifies and authenticates the calling app by HTTP
// Basic, by client_id/client_secret in the body, by a private_key_jwt client
// assertion, or by client_id alone for public apps. audiences are the values
// a client assertion's aud may take. The App returned is a copy.
func (o *Org) authenticateClient(r *http.Request, form url.Values, audiences []string) (App, *oauthError) {
	if rawID, rawSecret, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Base64.
		id, err1 := url.QueryUnescape(rawID)
		secret, err2 := url.QueryUnescape(rawSecret)
		if err1 != nil || err2 != nil {
			return App{}, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: descClientCredentials, basic: true}
		}
		if form.Has("client_secret") || form.Has("client_assertion") {
			return App{}, errBadRequest("invalid_request", descMultipleClientAuth)
		}
		if bodyID := form.Get("client_id"); bodyID != "" && bodyID != id {
			return App{}, errBadRequest("invalid_request", "client_id does not match the Authorization header")
		}
		app, ok := o.app(id)
		if !ok {
			return App{}, errBadRequest("invalid_client_id", descClientIDInvalid)
		}
		if !secretEqual(secret, app.ClientSecret) {
			return App{}, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: descClientCredentials, basic: true}
		}
		return app, nil
	}
	if form.Has("client_assertion") || form.Has("client_assertion_type") {
		return o.authenticateAssertion(form, audiences)
	}
	id := form.Get("client_id")
	app, ok := o.app(id)
	if !ok {
		return App{}, errBadRequest("invalid_client_id", descClientIDInvalid)
	}
	secret := form.Get("client_secret")
	if app.Public && secret == "" {
		return app, nil
	}
	if !secretEqual(secret, app.ClientSecret) {
		return App{}, errBadRequest("invalid_client", descClientCredentials)
	}
	return app, nil
}

// authenticateAssertion checks an RFC 7523 §2.2 client assertion signed
// with the key of the app's uploaded certificate.
func (o *Org) authenticateAssertion(form url.Values, audiences []string) (App, *oauthError) {
	bad := errBadRequest("invalid_client", descClientCredentials)
	if form.Get("client_assertion_type") != clientAssertionType {
		return App{}, errBadRequest("invalid_request", "unsupported client_assertion_type")
	}
	a, err := parseAssertion(form.Get("client_assertion"))
	if err != nil {
		return App{}, bad
	}
	app, ok := o.app(a.claims.Iss)
	if !ok {
		return App{}, errBadRequest("invalid_client_id", descClientIDInvalid)
	}
	if a.claims.Sub != a.claims.Iss {
		return App{}, bad
	}
	if id := form.Get("client_id"); id != "" && id != a.claims.Iss {
		return App{}, bad
	}
	if err := a.verify(app.CertificateKey); err != nil {
		return App{}, bad
	}
	if !a.claims.Aud.any(audiences...) {
		return App{}, bad
	}
	exp, ok := a.expiry()
	if !ok || !o.clock().Before(exp) {
		return App{}, bad
	}
	return app, nil
}

// app returns a copy of the app, so callers can read it without the lock.
func (o *Org) app(clientID string) (App, bool) {
	if clientID == "" {
		return App{}, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	a, ok := o.apps[clientID]
	if !ok {
		return App{}, false
	}
	return *a, true
}

// clientAudiences are the aud values a client assertion may carry at this endpoint.
func (o *Org) clientAudiences(r *http.Request) []string {
	base := o.baseURL(r)
	return []string{base, base + "/services/oauth2/token", base + r.URL.Path, audienceLogin, audienceTest}
}

// bearerToken returns the token of an `Authorization: Bearer` (or
// Salesforce's older `OAuth`) header.
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "OAuth")) {
		return ""
	}
	return strings.TrimSpace(tok)
}
