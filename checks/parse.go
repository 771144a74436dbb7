package checks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// oauthError is an RFC 6749 §5.2 error body.
type oauthError struct {
	Code        string
	Description string
	// red redacts the error as it is shown (see response.oauthError).
	red *Redactor
}

// String is the error as shown: redacted, then cut.
func (e *oauthError) String() string {
	if e.Description == "" {
		return e.red.Cut(e.Code, 100)
	}
	return e.red.Cut(e.Code, 100) + " (" + e.red.Cut(e.Description, 200) + ")"
}

// parseOAuthError reads {"error": ..., "error_description": ...}, or
// Salesforce's resource error array [{"errorCode": ..., "message": ...}].
// The whole body must be valid JSON.
func parseOAuthError(body []byte) *oauthError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if body[0] == '[' {
		var arr []map[string]any
		if json.Unmarshal(body, &arr) == nil && len(arr) > 0 {
			code, _ := arr[0]["errorCode"].(string)
			msg, _ := arr[0]["message"].(string)
			if code != "" {
				return &oauthError{Code: code, Description: msg}
			}
		}
		return nil
	}
	o, end, ok := scanObject(body)
	if !ok || end != len(body) {
		return nil
	}
	return oauthErrorOf(o)
}

// oauthErrorOf reads the error members of an answer already scanned.
func oauthErrorOf(o jsonObject) *oauthError {
	code, _ := jsonString(o.raw("error"))
	if code == "" {
		return nil
	}
	desc, _ := jsonString(o.raw("error_description"))
	return &oauthError{Code: code, Description: desc}
}

// object reads a JSON object, keeping numbers exact. Like json.Decoder, it
// reads the first value of body and ignores what follows.
func object(body []byte) (jsonObject, error) {
	if o, _, ok := scanObject(body); ok {
		return o, nil
	}
	return jsonObject{}, objectError(body)
}

// objectError says why body is not a JSON object, in encoding/json's words.
func objectError(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		if len(bytes.TrimSpace(body)) == 0 {
			return fmt.Errorf("empty body")
		}
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		return fmt.Errorf("JSON null instead of an object")
	}
	return fmt.Errorf("not a JSON object")
}

// str reads a string member (a number member as written); JSON null and absence give "".
func str(o jsonObject, key string) string {
	raw := o.raw(key)
	if isJSONNumber(raw) {
		return string(raw)
	}
	s, _ := jsonString(raw)
	return s
}

// number reads a numeric member that may be sent as a number or a numeric string.
func number(o jsonObject, key string) (float64, bool) {
	raw := o.raw(key)
	var s string
	switch {
	case isJSONNumber(raw):
		s = string(raw)
	case len(raw) > 0 && raw[0] == '"':
		v, _ := jsonString(raw)
		s = strings.TrimSpace(v)
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// maxEpoch is 9999-12-31, the last time RFC 3339 can express.
const maxEpoch = 253402300799

// epoch reads a timestamp in seconds, or in milliseconds when it is that
// large (Salesforce's issued_at is a string of epoch milliseconds).
func epoch(o jsonObject, key string) time.Time {
	f, ok := number(o, key)
	if !ok || f <= 0 {
		return time.Time{}
	}
	if f > 1e12 {
		f /= 1000
	}
	// Past year 9999 a time cannot even be written as JSON; such a value is garbage.
	if f >= maxEpoch {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

// boolean reads true/false, tolerating "true"/"false" strings.
func boolean(o jsonObject, key string) (bool, bool) {
	raw := o.raw(key)
	switch {
	case string(raw) == "true":
		return true, true
	case string(raw) == "false":
		return false, true
	}
	if v, ok := jsonString(raw); ok {
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return false, false
}

// scopeString reads a scope sent as a space-separated string or a JSON array.
func scopeString(o jsonObject, key string) string {
	raw := o.raw(key)
	if s, ok := jsonString(raw); ok {
		return s
	}
	if len(raw) == 0 || raw[0] != '[' {
		return ""
	}
	var v []any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	parts := make([]string, 0, len(v))
	for _, p := range v {
		if s, ok := p.(string); ok {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

// tokenResponse is the part of a token endpoint answer that checks uses.
type tokenResponse struct {
	accessToken  string
	refreshToken string
	tokenType    string
	scope        string
	expiresIn    time.Duration
	// expiresInCapped: expires_in was absurdly large and was cut to maxExpiresIn.
	expiresInCapped bool
	// Salesforce members.
	id, instanceURL, issuedAtRaw, signature string
	issuedAt                                time.Time
}

// parseTokenResponse reads a token answer from its scan (response.object).
func parseTokenResponse(m jsonObject, err error) (*tokenResponse, error) {
	if err != nil {
		return nil, err
	}
	tr := &tokenResponse{
		accessToken:  str(m, "access_token"),
		refreshToken: str(m, "refresh_token"),
		tokenType:    str(m, "token_type"),
		scope:        scopeString(m, "scope"),
		id:           str(m, "id"),
		instanceURL:  str(m, "instance_url"),
		issuedAtRaw:  str(m, "issued_at"),
		signature:    str(m, "signature"),
		issuedAt:     epoch(m, "issued_at"),
	}
	if s, ok := number(m, "expires_in"); ok && s > 0 {
		// A time.Duration overflows past about 292 years (9.2e9 s): cap it
		// and say so, rather than turn it negative and drop it.
		if s > maxExpiresIn.Seconds() {
			tr.expiresIn, tr.expiresInCapped = maxExpiresIn, true
		} else {
			tr.expiresIn = time.Duration(s * float64(time.Second))
		}
	}
	if tr.accessToken == "" {
		// The refresh token still counts: with rotation the one sent is dead now.
		return &tokenResponse{refreshToken: tr.refreshToken}, errNoAccessToken
	}
	if i := strings.IndexFunc(tr.accessToken, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		// No HTTP header can carry it (RFC 6750 tokens are printable): a
		// broken answer, not a network problem.
		return &tokenResponse{refreshToken: tr.refreshToken}, errTokenControl
	}
	return tr, nil
}

// maxExpiresIn caps an absurd expires_in (a century).
const maxExpiresIn = 100 * 365 * 24 * time.Hour

// errTokenControl: an access token with control characters (NUL, newline...).
var errTokenControl = errors.New("the access_token holds control characters, which no Authorization header can carry")

// errNoAccessToken: a successful token answer without an access token.
var errNoAccessToken = errors.New("no access_token in a successful answer")

// introspection is an RFC 7662 answer, tolerant of Salesforce's shapes.
type introspection struct {
	active    bool
	scope     string
	clientID  string
	username  string
	subject   string
	tokenType string
	exp       time.Time
	iat       time.Time
	nbf       time.Time
}

// parseIntrospection reads an introspection answer from its scan (response.object).
func parseIntrospection(m jsonObject, err error) (*introspection, error) {
	if err != nil {
		return nil, err
	}
	active, ok := boolean(m, "active")
	if !ok {
		return nil, fmt.Errorf("no boolean \"active\" member, which RFC 7662 requires")
	}
	return &introspection{
		active:    active,
		scope:     scopeString(m, "scope"),
		clientID:  str(m, "client_id"),
		username:  str(m, "username"),
		subject:   str(m, "sub"),
		tokenType: str(m, "token_type"),
		exp:       epoch(m, "exp"),
		iat:       epoch(m, "iat"),
		nbf:       epoch(m, "nbf"),
	}, nil
}

// jwtClaims reads the payload of a JWT-format access token without verifying
// it: the facts are informational and the server is asked anyway.
func jwtClaims(token string) (jsonObject, bool) {
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return jsonObject{}, false
	}
	payload, rest, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(rest, ".") {
		return jsonObject{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return jsonObject{}, false
	}
	o, err := object(b)
	if err != nil {
		return jsonObject{}, false
	}
	return o, true
}
