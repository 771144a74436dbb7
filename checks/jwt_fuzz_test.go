package checks_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokenwatch/tokenwatch/checks"
)

// assertionKeys are the keys a configuration can hold (configs accepts RSA
// and EC keys), with the algorithm each must sign with.
var assertionKeys = sync.OnceValue(func() []struct {
	key crypto.Signer
	alg jose.SignatureAlgorithm
} {
	ec := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	return []struct {
		key crypto.Signer
		alg jose.SignatureAlgorithm
	}{{testKey(), jose.RS256}, {ec(elliptic.P256()), jose.ES256}, {ec(elliptic.P384()), jose.ES384}, {ec(elliptic.P521()), jose.ES512}}
})

const fzTokenURL = "https://login.fz.example/services/oauth2/token"

// FuzzJWTAssertion builds the assertions of the jwt_bearer grant (RFC 7523
// §2.1) and of private_key_jwt client authentication (§2.2) from fuzzed
// client ids, subjects, audiences, key ids and scopes, with every kind of
// key, and reads them as the server would: each is a compact JWS that
// verifies with the public key, with the algorithm of the key, the key id
// and typ JWT in its header, and claims that round-trip (iss, sub, aud, a
// short exp after iat at the check's time, a jti of its own).
func FuzzJWTAssertion(f *testing.F) {
	f.Add(uint8(0), uint8(0), "3MVG9fz.App_Key", "integration@acme.example", "https://login.salesforce.com", "", "api refresh_token")
	f.Add(uint8(1), uint8(1), "fz-app:1", "", "", "k1", "")
	f.Add(uint8(2), uint8(2), "", "üser+tag@exämple.org", "https://test.salesforce.com/", "kid with spaces \"quoted\"", "openid")
	f.Add(uint8(3), uint8(3), "app\\x", "sub\x00nul", "urn:aud\t", "\u2028", "a b")
	f.Fuzz(func(t *testing.T, keyIndex, kind uint8, clientID, subject, audience, kid, scope string) {
		// Configuration values come from YAML, which holds valid UTF-8 only;
		// JSON would replace anything else.
		for _, s := range []string{clientID, subject, audience, kid, scope} {
			if !utf8.ValidString(s) {
				return
			}
		}
		k := assertionKeys()[int(keyIndex)%len(assertionKeys())]
		tg := checks.Target{Name: "fz-jwt", Provider: checks.ProviderGeneric, Timeout: time.Second,
			Endpoints: checks.Endpoints{Token: fzTokenURL}, Probe: checks.ProbeNone, TokenMode: checks.TokenModeFresh}
		grant, client := false, false
		switch kind % 3 {
		case 0: // Salesforce's JWT bearer flow: the assertion is the authentication
			grant = true
			tg.Client = checks.Client{ID: clientID}
			tg.Grant = checks.Grant{Type: checks.GrantJWTBearer, Username: subject, Audience: audience, PrivateKey: k.key, KeyID: kid, Scope: scope}
		case 1:
			client = true
			tg.Client = checks.Client{ID: clientID, AuthMethod: checks.AuthPrivateKeyJWT, PrivateKey: k.key, KeyID: kid}
			tg.Grant = checks.Grant{Type: checks.GrantClientCredentials, Scope: scope}
		case 2: // both, with one key
			grant, client = true, true
			tg.Client = checks.Client{ID: clientID, AuthMethod: checks.AuthPrivateKeyJWT, PrivateKey: k.key, KeyID: kid}
			tg.Grant = checks.Grant{Type: checks.GrantJWTBearer, Username: subject, Audience: audience, PrivateKey: k.key, KeyID: kid, Scope: scope}
		}
		var form url.Values
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			body, _ := io.ReadAll(r.Body)
			form, _ = url.ParseQuery(string(body))
			return answer(r, 400, http.Header{"Content-Type": {"application/json"}}, `{"error":"invalid_grant","error_description":"fuzz"}`), nil
		})
		now := time.Now().Truncate(time.Second)
		res := checks.NewChecker(tg, checks.WithTransport(rt), checks.WithClock(func() time.Time { return now })).Check(context.Background())
		if res.Outcome != checks.OutcomeGrantRejected {
			t.Fatalf("outcome %s, want the server's grant_rejected: %s", res.Outcome, res.Explanation)
		}
		if grant && form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			t.Errorf("grant_type %q", form.Get("grant_type"))
		}
		if client && form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Errorf("client_assertion_type %q", form.Get("client_assertion_type"))
		}
		if got := form.Get("scope"); got != scope {
			t.Errorf("scope %q sent, want %q", got, scope)
		}
		var jtis []string
		check := func(field string, want jwt.Claims, lifetime time.Duration) {
			raw := form.Get(field)
			if raw == "" {
				t.Fatalf("no %s sent", field)
			}
			if strings.Count(raw, ".") != 2 {
				t.Fatalf("%s is not a compact JWS: %d parts", field, strings.Count(raw, ".")+1)
			}
			tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{k.alg})
			if err != nil {
				t.Fatalf("%s does not parse as a %s JWS: %v", field, k.alg, err)
			}
			h := tok.Headers[0]
			if h.KeyID != kid || h.ExtraHeaders[jose.HeaderType] != "JWT" {
				t.Errorf("%s header: kid %q typ %v, want kid %q typ JWT", field, h.KeyID, h.ExtraHeaders[jose.HeaderType], kid)
			}
			var got jwt.Claims
			if err := tok.Claims(k.key.Public(), &got); err != nil {
				t.Fatalf("%s does not verify with the public key: %v", field, err)
			}
			if got.Issuer != want.Issuer || got.Subject != want.Subject || len(got.Audience) != 1 || got.Audience[0] != want.Audience[0] {
				t.Errorf("%s claims iss %q sub %q aud %q, want iss %q sub %q aud %q", field, got.Issuer, got.Subject, got.Audience,
					want.Issuer, want.Subject, want.Audience)
			}
			if got.IssuedAt == nil || got.Expiry == nil || !got.IssuedAt.Time().Equal(now) || got.Expiry.Time().Sub(now) != lifetime {
				t.Errorf("%s iat %v exp %v, want iat %v and exp %s later", field, got.IssuedAt, got.Expiry, now, lifetime)
			}
			if got.ID == "" {
				t.Errorf("%s has no jti", field)
			}
			jtis = append(jtis, got.ID)
			if err := got.ValidateWithLeeway(jwt.Expected{Issuer: want.Issuer, Subject: want.Subject, AnyAudience: want.Audience, Time: now}, 0); err != nil {
				t.Errorf("%s does not validate at the time it was made: %v", field, err)
			}
		}
		if grant {
			aud := audience
			if aud == "" {
				aud = fzTokenURL
			}
			check("assertion", jwt.Claims{Issuer: clientID, Subject: subject, Audience: jwt.Audience{aud}}, 170*time.Second)
		}
		if client {
			check("client_assertion", jwt.Claims{Issuer: clientID, Subject: clientID, Audience: jwt.Audience{fzTokenURL}}, 2*time.Minute)
			if form.Get("client_id") != clientID {
				t.Errorf("client_id %q sent, want %q", form.Get("client_id"), clientID)
			}
		}
		if len(jtis) == 2 && jtis[0] == jtis[1] {
			t.Errorf("both assertions have jti %q", jtis[0])
		}
		if _, ok := k.key.(*rsa.PrivateKey); !ok && strings.Contains(strings.Join(res.Steps[0].Sent, " "), "RS256") {
			t.Errorf("the token step says it sent an RS256 assertion, signed with %s: %q", k.alg, res.Steps[0].Sent)
		}
	})
}
