package orgsim

import (
	"net/http"
)

// introspection is an active RFC 7662 answer in Salesforce's shape. Scope
// and ClientID are pointers because Salesforce sends JSON nulls for session ids.
type introspection struct {
	Active      bool    `json:"active"`
	Scope       *string `json:"scope"`
	ClientID    *string `json:"client_id"`
	Username    string  `json:"username"`
	Sub         string  `json:"sub"`
	TokenType   string  `json:"token_type"`
	SessionType string  `json:"session_type,omitempty"`
	Exp         int64   `json:"exp,omitempty"` // absent for refresh tokens, which live until revoked
	Iat         int64   `json:"iat"`
	Nbf         int64   `json:"nbf"`
}

// inactive is the whole answer for dead, unknown and hidden tokens alike, as
// RFC 7662 §2.2 wants: the caller cannot tell them apart.
const inactive = `{"active":false}`

func (o *Org) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		writeOAuthError(w, errBadRequest("invalid_request", descMustPost))
		return
	}
	form, oerr := parseForm(w, r)
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	_, _, basic := r.BasicAuth()
	if !basic && !form.Has("client_assertion") && form.Get("client_secret") == "" {
		// Salesforce authenticates the introspecting app by its consumer key
		// and secret: a client_id alone, as a JWT-bearer setup without a
		// secret would send, is refused.
		writeOAuthError(w, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: descClientCredentials})
		return
	}
	caller, oerr := o.authenticateClient(r, form, o.clientAudiences(r))
	if oerr != nil {
		if oerr.code == "invalid_client" || oerr.code == "invalid_client_id" {
			// RFC 7662 §2.3: an unauthenticated caller gets 401.
			oerr = &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: descClientCredentials, basic: oerr.basic}
		}
		writeOAuthError(w, oerr)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		writeOAuthError(w, errBadRequest("invalid_request", "token is required"))
		return
	}
	// token_type_hint is optional and only a hint: tokens are found either way.

	now := o.clock()
	o.mu.Lock()
	t, ok := o.tokens[tok]
	var snap token
	if ok {
		snap = *t
	}
	o.mu.Unlock()

	if !ok || !snap.live(now) || !mayIntrospect(caller, &snap) {
		w.Header().Set("Content-Type", jsonContentType)
		_, _ = w.Write([]byte(inactive))
		return
	}
	ans := introspection{
		Active:   true,
		Username: snap.username,
		Sub:      o.identityURL(r, snap.userID),
		Iat:      snap.issued.Unix(),
		Nbf:      snap.issued.Unix(),
	}
	switch {
	case snap.refresh:
		ans.TokenType = "refresh_token"
	case snap.grant == passwordGrant:
		// Session ids: non-standard token_type and nulls, as seen live.
		ans.TokenType = "sid"
		ans.SessionType = "Oauth2"
	default:
		ans.TokenType = "access_token"
	}
	if snap.grant != passwordGrant {
		ans.Scope, ans.ClientID = &snap.scope, &snap.clientID
	}
	if exp := snap.expiry(); !exp.IsZero() {
		ans.Exp = exp.Unix()
	}
	writeJSON(w, http.StatusOK, ans)
}

// mayIntrospect is Salesforce's rule: an app sees its own tokens except
// password-grant session ids; "Introspect All Tokens" sees everything.
func mayIntrospect(caller App, t *token) bool {
	if caller.IntrospectAll {
		return true
	}
	return t.clientID == caller.ClientID && t.grant != passwordGrant
}
