package orgsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Grant types as sent in grant_type.
const (
	grantTypePassword          = "password"
	grantTypeClientCredentials = "client_credentials"
	grantTypeJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	grantTypeRefreshToken      = "refresh_token"
)

// tokenResponse keeps Salesforce's field order. There is no expires_in:
// Salesforce never sends one.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Signature    string `json:"signature,omitempty"`
	Scope        string `json:"scope,omitempty"`
	InstanceURL  string `json:"instance_url"`
	ID           string `json:"id"`
	TokenType    string `json:"token_type"`
	IssuedAt     string `json:"issued_at"`
}

// issued is what a grant produced, before it is written out.
type issued struct {
	app     App
	access  string
	refresh string
	userID  string
	scope   string
	at      time.Time
	// signed says whether the response carries `signature`; the jwt_bearer
	// grant's published examples have none.
	signed bool
}

func (o *Org) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if r.Method != http.MethodPost {
		writeOAuthError(w, errBadRequest("invalid_request", descMustPost))
		return
	}
	form, oerr := parseForm(w, r)
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	if o.inactive.Load() {
		writeOAuthError(w, errBadRequest("inactive_org", descInactiveOrg))
		return
	}
	var got *issued
	switch form.Get("grant_type") {
	case grantTypePassword:
		got, oerr = o.grantPassword(r, form)
	case grantTypeClientCredentials:
		got, oerr = o.grantClientCredentials(r, form)
	case grantTypeJWTBearer:
		got, oerr = o.grantJWTBearer(r, form)
	case grantTypeRefreshToken:
		got, oerr = o.grantRefreshToken(r, form)
	default:
		oerr = errBadRequest("unsupported_grant_type", descGrantNotSupported)
	}
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	resp := tokenResponse{
		AccessToken:  got.access,
		RefreshToken: got.refresh,
		Scope:        got.scope,
		InstanceURL:  o.baseURL(r),
		ID:           o.identityURL(r, got.userID),
		TokenType:    "Bearer",
		IssuedAt:     strconv.FormatInt(got.at.UnixMilli(), 10),
	}
	if got.signed && got.app.ClientSecret != "" {
		key := got.app.ClientSecret
		if faultFrom(r.Context()).BadSignature {
			key += "-wrong"
		}
		resp.Signature = sign(key, resp.ID, resp.IssuedAt)
	}
	writeJSON(w, http.StatusOK, resp)
}

// sign is Salesforce's response signature: Base64(HMAC-SHA256(id + issued_at)) keyed by the client secret.
func sign(secret, id, issuedAt string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id + issuedAt))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// errRateLimited is Salesforce's answer beyond 3,600 logins per user per
// hour: a plain invalid_grant; only Login History says LOGIN_RATE_EXCEEDED.
func errRateLimited() *oauthError {
	return errInvalidGrant(descLoginRateExceeded)
}

func (o *Org) grantPassword(r *http.Request, form url.Values) (*issued, *oauthError) {
	app, oerr := o.authenticateClient(r, form, o.clientAudiences(r))
	if oerr != nil {
		return nil, oerr
	}
	// A blocked flow looks like a wrong password; only Login History says otherwise.
	if o.passwordBlocked.Load() {
		return nil, errInvalidGrant(descAuthFailure)
	}
	username, password := form.Get("username"), form.Get("password")
	if username == "" || password == "" {
		return nil, errBadRequest("invalid_request", "username and password are required")
	}
	now := o.clock()
	o.mu.Lock()
	defer o.mu.Unlock()
	u := o.users[username]
	if u == nil {
		return nil, errInvalidGrant(descAuthFailure)
	}
	if !o.allowLoginLocked(username, now) {
		return nil, errRateLimited()
	}
	if !secretEqual(password, u.Password+u.SecurityToken) {
		return nil, errInvalidGrant(descAuthFailure)
	}
	if u.Frozen {
		return nil, errInvalidGrant(descInactiveUser)
	}
	if u.IPRestricted {
		return nil, errInvalidGrant(descIPRestricted)
	}
	at := o.newAccessLocked(now, &app, u, passwordGrant, "")
	return &issued{app: app, access: at, userID: u.id, at: now, signed: true}, nil
}

func (o *Org) grantClientCredentials(r *http.Request, form url.Values) (*issued, *oauthError) {
	app, oerr := o.authenticateClient(r, form, o.clientAudiences(r))
	if oerr != nil {
		return nil, oerr
	}
	if o.opts.LoginHost {
		// Client credentials needs the org's My Domain, which names the org.
		return nil, errInvalidGrant(descNotOnThisDomain)
	}
	now := o.clock()
	o.mu.Lock()
	defer o.mu.Unlock()
	u := o.users[app.RunAsUser]
	if app.RunAsUser == "" || u == nil {
		return nil, errInvalidGrant(descNoCCUser)
	}
	if !o.allowLoginLocked(u.Username, now) {
		return nil, errRateLimited()
	}
	if u.Frozen {
		return nil, errInvalidGrant(descInactiveUser)
	}
	if u.IPRestricted {
		return nil, errInvalidGrant(descIPRestricted)
	}
	at := o.newAccessLocked(now, &app, u, grantTypeClientCredentials, "")
	return &issued{app: app, access: at, userID: u.id, scope: o.scopeOf(&app), at: now, signed: true}, nil
}

// grantJWTBearer needs no client authentication: the assertion's signature
// by the app's certificate key is the proof.
func (o *Org) grantJWTBearer(r *http.Request, form url.Values) (*issued, *oauthError) {
	raw := form.Get("assertion")
	if raw == "" {
		return nil, errBadRequest("invalid_request", "assertion is required")
	}
	a, err := parseAssertion(raw)
	if err != nil {
		return nil, errInvalidGrant(descInvalidAssertion)
	}
	app, ok := o.app(a.claims.Iss)
	if !ok {
		return nil, errBadRequest("invalid_client_id", descClientIDInvalid)
	}
	if err := a.verify(app.CertificateKey); err != nil {
		return nil, errInvalidGrant(descInvalidAssertion)
	}
	audience := audienceLogin
	if o.opts.Sandbox {
		audience = audienceTest
	}
	if !a.claims.Aud.any(audience, o.baseURL(r)) {
		return nil, errInvalidGrant(descAudience)
	}
	now := o.clock()
	exp, ok := a.expiry()
	switch {
	case !ok:
		return nil, errInvalidGrant(descInvalidAssertion)
	case !now.Before(exp):
		return nil, errInvalidGrant(descAssertionExpired)
	case exp.Sub(now) > maxAssertionLifetime+assertionLeeway:
		return nil, errInvalidGrant(descAssertionTooLong)
	}
	username := a.claims.Sub
	if a.claims.Prn != "" {
		username = a.claims.Prn
	}
	if username == "" {
		return nil, errInvalidGrant(descInvalidAssertion)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	u := o.users[username]
	if u == nil {
		return nil, errInvalidGrant(descNotApproved)
	}
	if !o.allowLoginLocked(username, now) {
		return nil, errRateLimited()
	}
	if u.Frozen {
		return nil, errInvalidGrant(descInactiveUser)
	}
	if u.IPRestricted {
		return nil, errInvalidGrant(descIPRestricted)
	}
	if !slices.Contains(app.PreApproved, username) {
		return nil, errInvalidGrant(descNotApproved)
	}
	at := o.newAccessLocked(now, &app, u, "jwt_bearer", "")
	return &issued{app: app, access: at, userID: u.id, scope: o.scopeOf(&app), at: now}, nil
}

func (o *Org) grantRefreshToken(r *http.Request, form url.Values) (*issued, *oauthError) {
	app, oerr := o.authenticateClient(r, form, o.clientAudiences(r))
	if oerr != nil {
		return nil, oerr
	}
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, errBadRequest("invalid_request", "refresh_token is required")
	}
	now := o.clock()
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.tokens[rt]
	if t == nil || !t.refresh || t.clientID != app.ClientID {
		return nil, errInvalidGrant(descExpiredRefresh)
	}
	if t.retired {
		// Reuse of a rotated-out token suggests theft: end the whole chain.
		o.revokeFamilyLocked(t.family, now)
		return nil, errInvalidGrant(descExpiredRefresh)
	}
	u := o.users[t.username]
	if !t.live(now) || u == nil {
		return nil, errInvalidGrant(descExpiredRefresh)
	}
	if !o.allowLoginLocked(u.Username, now) {
		return nil, errRateLimited()
	}
	if u.Frozen {
		return nil, errInvalidGrant(descInactiveUser)
	}
	if u.IPRestricted {
		return nil, errInvalidGrant(descIPRestricted)
	}
	t.lastUsed = now
	got := &issued{app: app, userID: u.id, scope: t.scope, at: now, signed: true}
	got.access = o.newAccessLocked(now, &app, u, grantTypeRefreshToken, t.family)
	if app.RefreshTokenRotation {
		got.refresh = o.newRefreshLocked(now, &app, u, t.family)
		t.retired = true
		t.revokedAt = now
	}
	return got, nil
}
