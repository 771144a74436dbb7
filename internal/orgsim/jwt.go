package orgsim

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Salesforce's fixed audiences; an org's own URL is accepted too.
const (
	audienceLogin = "https://login.salesforce.com"
	audienceTest  = "https://test.salesforce.com"
)

// maxAssertionLifetime is how far ahead a jwt_bearer assertion's exp may
// lie: Salesforce asks for "within 3 minutes"; the leeway absorbs clock skew.
const (
	maxAssertionLifetime = 3 * time.Minute
	assertionLeeway      = 30 * time.Second
)

// assertion is a parsed, not yet verified, RS256 JWT.
type assertion struct {
	claims    assertionClaims
	signed    []byte // header.payload, the signature's input
	signature []byte
}

type assertionClaims struct {
	Iss string    `json:"iss"`
	Sub string    `json:"sub"`
	Prn string    `json:"prn"` // legacy subject; wins over sub
	Aud audiences `json:"aud"`
	Exp *float64  `json:"exp"`
}

// audiences accepts `aud` as one string or an array, as RFC 7519 allows.
type audiences []string

func (a *audiences) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audiences{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud: %w", err)
	}
	*a = many
	return nil
}

// any reports whether one of the audiences is in allowed, ignoring a trailing slash.
func (a audiences) any(allowed ...string) bool {
	for _, got := range a {
		got = strings.TrimSuffix(got, "/")
		for _, want := range allowed {
			if got == strings.TrimSuffix(want, "/") {
				return true
			}
		}
	}
	return false
}

func decodeSegment(s string) ([]byte, error) {
	// Some signers pad; JWS says not to, but Salesforce is lenient.
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func parseAssertion(s string) (*assertion, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	hb, err := decodeSegment(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if header.Alg != "RS256" {
		return nil, fmt.Errorf("alg %q is not RS256", header.Alg)
	}
	pb, err := decodeSegment(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	a := &assertion{signed: []byte(parts[0] + "." + parts[1])}
	if err := json.Unmarshal(pb, &a.claims); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if a.signature, err = decodeSegment(parts[2]); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return a, nil
}

func (a *assertion) verify(key *rsa.PublicKey) error {
	if key == nil {
		return errors.New("the app has no certificate")
	}
	sum := sha256.Sum256(a.signed)
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], a.signature); err != nil {
		return fmt.Errorf("verify RS256 signature: %w", err)
	}
	return nil
}

// expiry returns exp as a time; ok is false when it is absent or absurd.
func (a *assertion) expiry() (time.Time, bool) {
	if a.claims.Exp == nil || math.IsNaN(*a.claims.Exp) || math.IsInf(*a.claims.Exp, 0) || *a.claims.Exp > 1e15 || *a.claims.Exp < 0 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(*a.claims.Exp)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
