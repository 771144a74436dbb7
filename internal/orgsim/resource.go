package orgsim

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// apiVersion is the REST API version the org advertises.
const apiVersion = "62.0"

// dailyAPIRequests is the Max reported by /limits.
const dailyAPIRequests = 15000

// touch returns a copy of the live access token and records the activity
// that slides its session timeout forward. Refresh tokens are not sessions.
func (o *Org) touch(tok string) (token, bool) {
	if tok == "" {
		return token{}, false
	}
	now := o.clock()
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.tokens[tok]
	if t == nil || t.refresh || !t.live(now) {
		return token{}, false
	}
	// Salesforce records activity only once half the timeout has passed
	// since the activity last recorded, so a session used all the time
	// still ends between half the timeout and the timeout after a use.
	if now.Sub(t.lastActivity) >= t.timeout/2 {
		t.lastActivity = now
	}
	return *t, true
}

// identityScopes grant access to the identity service (userinfo and the
// identity URL); "full" grants everything.
var identityScopes = []string{"id", "openid", "profile", "email", "address", "phone", "full"}

// mayReadIdentity reports whether a token's scope reaches the identity
// service. Session ids (password grant) carry no scope and reach everything.
func mayReadIdentity(scope string) bool {
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

// mayUseREST reports whether a token's scope reaches the REST API: api,
// or full. Session ids (password grant) carry no scope and reach everything.
func mayUseREST(scope string) bool {
	if scope == "" {
		return true
	}
	for _, s := range strings.Fields(scope) {
		if s == "api" || s == "full" {
			return true
		}
	}
	return false
}

func allowGetPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodPost || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD, POST")
	w.WriteHeader(http.StatusMethodNotAllowed)
	return false
}

func writeText(w http.ResponseWriter, status int, line string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, line)
}

// userinfo is the OIDC UserInfo answer, a subset of Salesforce's claims.
type userinfo struct {
	Sub               string            `json:"sub"`
	UserID            string            `json:"user_id"`
	OrganizationID    string            `json:"organization_id"`
	PreferredUsername string            `json:"preferred_username"`
	Nickname          string            `json:"nickname"`
	Name              string            `json:"name"`
	Email             string            `json:"email"`
	EmailVerified     bool              `json:"email_verified"`
	GivenName         string            `json:"given_name"`
	FamilyName        string            `json:"family_name"`
	Zoneinfo          string            `json:"zoneinfo"`
	Photos            map[string]string `json:"photos"`
	Profile           string            `json:"profile"`
	Picture           string            `json:"picture"`
	URLs              map[string]string `json:"urls"`
	Active            bool              `json:"active"`
	UserType          string            `json:"user_type"`
	Language          string            `json:"language"`
	Locale            string            `json:"locale"`
	UTCOffset         int               `json:"utcOffset"`
	UpdatedAt         string            `json:"updated_at"`
	IsAppInstalled    bool              `json:"is_app_installed"`
}

// serveUserinfo answers a dead or unknown token with 401, WWW-Authenticate
// `Bearer error="invalid_token"` and the plain-text body Bad_OAuth_Token.
func (o *Org) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	if !allowGetPost(w, r) {
		return
	}
	tok := bearerToken(r)
	if tok == "" {
		// RFC 6750 §3.1: no error attribute when no credentials were sent.
		w.Header().Set("WWW-Authenticate", `Bearer realm="salesforce"`)
		writeText(w, http.StatusUnauthorized, "Missing_OAuth_Token")
		return
	}
	t, ok := o.touch(tok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="salesforce", error="invalid_token", error_description="The access token provided is expired, revoked, malformed, or invalid for other reasons."`)
		writeText(w, http.StatusUnauthorized, "Bad_OAuth_Token")
		return
	}
	if !mayReadIdentity(t.scope) {
		// A live token whose scope (api, refresh_token) does not reach the
		// identity service: refused, though the token works for the REST
		// API. The body is unverified; reports show the 403.
		writeText(w, http.StatusForbidden, "Forbidden")
		return
	}
	base := o.baseURL(r)
	given, family := names(t.username)
	writeJSON(w, http.StatusOK, userinfo{
		Sub:               o.identityURL(r, t.userID),
		UserID:            t.userID,
		OrganizationID:    o.orgID,
		PreferredUsername: t.username,
		Nickname:          given,
		Name:              strings.TrimSpace(given + " " + family),
		Email:             t.username,
		EmailVerified:     true,
		GivenName:         given,
		FamilyName:        family,
		Zoneinfo:          "America/Los_Angeles",
		Photos:            map[string]string{"picture": base + "/profilephoto/005/F", "thumbnail": base + "/profilephoto/005/T"},
		Profile:           base + "/" + t.userID,
		Picture:           base + "/profilephoto/005/F",
		URLs:              o.apiURLs(base, t.userID),
		Active:            true,
		UserType:          "STANDARD",
		Language:          "en_US",
		Locale:            "en_US",
		UTCOffset:         -28800000,
		UpdatedAt:         "2024-01-01T00:00:00Z",
		IsAppInstalled:    true,
	})
}

// names derives display names from a username such as jane.doe@acme.com.
func names(username string) (given, family string) {
	local, _, _ := strings.Cut(username, "@")
	given, family, ok := strings.Cut(local, ".")
	if !ok {
		return "", local
	}
	return given, family
}

func (o *Org) apiURLs(base, userID string) map[string]string {
	rest := base + "/services/data/v{version}/"
	return map[string]string{
		"enterprise":    base + "/services/Soap/c/{version}/" + o.orgID15,
		"metadata":      base + "/services/Soap/m/{version}/" + o.orgID15,
		"partner":       base + "/services/Soap/u/{version}/" + o.orgID15,
		"rest":          rest,
		"sobjects":      rest + "sobjects/",
		"search":        rest + "search/",
		"query":         rest + "query/",
		"recent":        rest + "recent/",
		"tooling_rest":  rest + "tooling/",
		"profile":       base + "/" + userID,
		"users":         rest + "chatter/users",
		"custom_domain": base,
	}
}

// sessionError is one element of the REST API's error array.
type sessionError struct {
	Message   string `json:"message"`
	ErrorCode string `json:"errorCode"`
}

// serveData answers any /services/data/ path: limits, the version list, or
// an empty object. A dead token gets 401 with a JSON array, as the REST API sends.
func (o *Org) serveData(w http.ResponseWriter, r *http.Request) {
	t, ok := o.touch(bearerToken(r))
	if !ok {
		w.Header().Set("WWW-Authenticate", "Token")
		writeJSON(w, http.StatusUnauthorized, []sessionError{{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"}})
		return
	}
	if !mayUseREST(t.scope) {
		// A live token whose scope lacks api (chatter_api, web, an identity
		// scope...): refused with the same status and code as a dead one.
		w.Header().Set("WWW-Authenticate", "Token")
		writeJSON(w, http.StatusUnauthorized, []sessionError{{Message: "This session is not valid for use with the REST API", ErrorCode: "INVALID_SESSION_ID"}})
		return
	}
	used := o.dataCalls.Add(1)
	// Every REST answer tells the org's daily API usage and allowance.
	w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", used, dailyAPIRequests))
	path := strings.TrimSuffix(r.URL.Path, "/")
	o.mu.Lock()
	noViewSetup := o.users[t.username] != nil && o.users[t.username].NoViewSetup
	o.mu.Unlock()
	switch {
	case path == "/services/data":
		writeJSON(w, http.StatusOK, []map[string]string{{"label": "Winter '25", "url": "/services/data/v" + apiVersion, "version": apiVersion}})
	case strings.HasSuffix(path, "/limits") && noViewSetup:
		// /limits needs View Setup and Configuration. The body is
		// unverified: Salesforce's usual answer for a missing permission.
		writeJSON(w, http.StatusForbidden, []sessionError{{Message: "Insufficient Privileges: You do not have the level of access necessary to perform the operation you requested.", ErrorCode: "INSUFFICIENT_ACCESS"}})
	case strings.HasSuffix(path, "/limits"):
		type limit struct {
			Max       int64 `json:"Max"`
			Remaining int64 `json:"Remaining"`
		}
		writeJSON(w, http.StatusOK, map[string]limit{
			"DailyApiRequests": {Max: dailyAPIRequests, Remaining: max(0, dailyAPIRequests-used)},
		})
	default:
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

// identity is the identity URL's answer, a subset of Salesforce's.
type identity struct {
	ID               string            `json:"id"`
	AssertedUser     bool              `json:"asserted_user"`
	UserID           string            `json:"user_id"`
	OrganizationID   string            `json:"organization_id"`
	Username         string            `json:"username"`
	NickName         string            `json:"nick_name"`
	DisplayName      string            `json:"display_name"`
	Email            string            `json:"email"`
	EmailVerified    bool              `json:"email_verified"`
	FirstName        string            `json:"first_name"`
	LastName         string            `json:"last_name"`
	Timezone         string            `json:"timezone"`
	URLs             map[string]string `json:"urls"`
	Active           bool              `json:"active"`
	UserType         string            `json:"user_type"`
	Language         string            `json:"language"`
	Locale           string            `json:"locale"`
	UTCOffset        int               `json:"utcOffset"`
	LastModifiedDate string            `json:"last_modified_date"`
	IsAppInstalled   bool              `json:"is_app_installed"`
}

// serveIdentity answers the identity URL. A dead token gets 403 with one
// line of plain text, not JSON, as seen live.
func (o *Org) serveIdentity(w http.ResponseWriter, r *http.Request) {
	if !allowGetPost(w, r) {
		return
	}
	t, ok := o.touch(bearerToken(r))
	if !ok {
		writeText(w, http.StatusForbidden, "Bad_OAuth_Token\n")
		return
	}
	if !mayReadIdentity(t.scope) {
		writeText(w, http.StatusForbidden, "Forbidden")
		return
	}
	orgID, userID := r.PathValue("org"), r.PathValue("user")
	o.mu.Lock()
	u := o.userIDs[userID]
	var username string
	if u != nil {
		username = u.Username
	}
	o.mu.Unlock()
	if (orgID != o.orgID && orgID != o.orgID15) || u == nil {
		writeText(w, http.StatusNotFound, "Bad_Id\n")
		return
	}
	base := o.baseURL(r)
	given, family := names(username)
	writeJSON(w, http.StatusOK, identity{
		ID:               o.identityURL(r, userID),
		AssertedUser:     true,
		UserID:           userID,
		OrganizationID:   o.orgID,
		Username:         username,
		NickName:         given,
		DisplayName:      strings.TrimSpace(given + " " + family),
		Email:            username,
		EmailVerified:    true,
		FirstName:        given,
		LastName:         family,
		Timezone:         "America/Los_Angeles",
		URLs:             o.apiURLs(base, userID),
		Active:           true,
		UserType:         "STANDARD",
		Language:         "en_US",
		Locale:           "en_US",
		UTCOffset:        -28800000,
		LastModifiedDate: "2024-01-01T00:00:00.000+0000",
		IsAppInstalled:   true,
	})
}
