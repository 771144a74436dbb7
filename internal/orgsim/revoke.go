package orgsim

import (
	"net/http"
	"strings"
)

// serveRevoke revokes an access or refresh token. Salesforce requires no
// client authentication here, and answers 400 invalid_token for a token it
// does not know or that is already dead, where RFC 7009 would answer 200.
func (o *Org) serveRevoke(w http.ResponseWriter, r *http.Request) {
	var tok string
	switch r.Method {
	case http.MethodGet:
		tok = r.URL.Query().Get("token")
	case http.MethodPost:
		form, oerr := parseForm(w, r)
		if oerr != nil {
			writeOAuthError(w, oerr)
			return
		}
		tok = form.Get("token")
	default:
		writeOAuthError(w, errBadRequest("invalid_request", "must use HTTP POST or GET"))
		return
	}
	if tok == "" {
		writeOAuthError(w, errBadRequest("unsupported_token_type", "missing token"))
		return
	}
	now := o.clock()
	o.mu.Lock()
	t, ok := o.tokens[tok]
	live := ok && t.live(now)
	if live {
		if t.refresh {
			// Revoking a refresh token also revokes the access tokens issued from it.
			o.revokeFamilyLocked(t.family, now)
		} else {
			t.revokedAt = now
		}
	}
	o.mu.Unlock()
	if !live {
		if !ok && !o.tokenShaped(tok) {
			// A string that is no session id or refresh token of this org:
			// Salesforce names the token type unsupported.
			writeOAuthError(w, errBadRequest("unsupported_token_type", "this token type is not supported"))
			return
		}
		writeOAuthError(w, errBadRequest("invalid_token", ""))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// tokenShaped reports whether tok looks like one of the org's session ids
// ("<org id>!...") or refresh tokens ("5Aep...").
func (o *Org) tokenShaped(tok string) bool {
	return strings.HasPrefix(tok, o.orgID15+"!") || strings.HasPrefix(tok, "5Aep")
}
