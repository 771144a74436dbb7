package checks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	grantTypeJWTBearer      = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	clientAssertionTypeJWT  = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	assertionLifetime       = 170 * time.Second // Salesforce wants exp within 3 minutes
	clientAssertionLifetime = 2 * time.Minute
)

// authenticate adds client authentication to a request (RFC 6749 §2.3,
// RFC 7523 §2.2, RFC 8705). tokenURL is the audience of a client assertion.
func (c *Checker) authenticate(rq *request, cl *Client, tokenURL string) error {
	switch cl.AuthMethod {
	case AuthClientSecretBasic:
		// RFC 6749 §2.3.1: form-urlencode each part before Base64.
		if rq.header == nil {
			rq.header = http.Header{}
		}
		cred := url.QueryEscape(cl.ID) + ":" + url.QueryEscape(cl.Secret.Reveal())
		rq.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
		rq.sent = append(rq.sent, "Authorization: Basic (client_id:client_secret)")
	case AuthClientSecretPost:
		rq.form.Set("client_id", cl.ID)
		rq.form.Set("client_secret", cl.Secret.Reveal())
		rq.sent = append(rq.sent, "client_id", "client_secret")
	case AuthPrivateKeyJWT:
		if cl.PrivateKey == nil {
			return fmt.Errorf("private_key_jwt needs a private key")
		}
		now := c.now()
		assertion, err := signJWT(cl.PrivateKey, cl.KeyID, jwt.Claims{
			Issuer:   cl.ID,
			Subject:  cl.ID,
			Audience: jwt.Audience{tokenURL},
			Expiry:   jwt.NewNumericDate(now.Add(clientAssertionLifetime)),
			IssuedAt: jwt.NewNumericDate(now),
			ID:       randomID(),
		})
		if err != nil {
			return fmt.Errorf("sign client assertion: %w", err)
		}
		rq.form.Set("client_id", cl.ID)
		rq.form.Set("client_assertion_type", clientAssertionTypeJWT)
		rq.form.Set("client_assertion", assertion)
		rq.sent = append(rq.sent, "client_id", "client_assertion_type", "client_assertion ("+string(signingAlg(cl.PrivateKey))+" JWT)")
	case AuthTLSClientAuth, AuthNone, "":
		// The certificate travels in the TLS handshake; a public client only names itself.
		if cl.ID != "" {
			rq.form.Set("client_id", cl.ID)
			rq.sent = append(rq.sent, "client_id")
		}
	default:
		return fmt.Errorf("unknown client auth method %q", cl.AuthMethod)
	}
	return nil
}

// tokenRequest builds the grant request for the token endpoint.
func (c *Checker) tokenRequest(tokenURL string, refreshToken Secret) (request, error) {
	g := &c.target.Grant
	rq := request{step: StepToken, method: http.MethodPost, url: tokenURL, form: newForm(), credentials: true}
	switch g.Type {
	case GrantPassword:
		rq.form.Set("grant_type", "password")
		rq.form.Set("username", g.Username)
		rq.form.Set("password", g.Password.Reveal())
		rq.sent = append(rq.sent, "grant_type=password", "username", "password")
	case GrantClientCredentials:
		rq.form.Set("grant_type", "client_credentials")
		rq.sent = append(rq.sent, "grant_type=client_credentials")
	case GrantJWTBearer:
		if g.PrivateKey == nil {
			return rq, fmt.Errorf("jwt_bearer needs a private key")
		}
		aud := g.Audience
		if aud == "" {
			aud = tokenURL
		}
		now := c.now()
		assertion, err := signJWT(g.PrivateKey, g.KeyID, jwt.Claims{
			Issuer:   c.target.Client.ID,
			Subject:  g.Username,
			Audience: jwt.Audience{aud},
			Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
			IssuedAt: jwt.NewNumericDate(now),
			ID:       randomID(),
		})
		if err != nil {
			return rq, fmt.Errorf("sign grant assertion: %w", err)
		}
		rq.form.Set("grant_type", grantTypeJWTBearer)
		rq.form.Set("assertion", assertion)
		rq.sent = append(rq.sent, "grant_type="+grantTypeJWTBearer, "assertion ("+string(signingAlg(g.PrivateKey))+" JWT: iss=client id, sub=username, aud="+aud+")")
	case GrantRefreshToken:
		rq.form.Set("grant_type", "refresh_token")
		rq.form.Set("refresh_token", refreshToken.Reveal())
		rq.sent = append(rq.sent, "grant_type=refresh_token", "refresh_token")
	default:
		return rq, fmt.Errorf("unknown grant type %q", g.Type)
	}
	if g.Scope != "" {
		rq.form.Set("scope", g.Scope)
		rq.sent = append(rq.sent, "scope="+g.Scope)
	}
	cl := c.target.Client
	if g.Type == GrantJWTBearer && cl.Secret == "" && cl.PrivateKey == nil && cl.AuthMethod != AuthTLSClientAuth {
		// Salesforce's JWT bearer flow needs no client authentication: the assertion is it.
		cl.AuthMethod = AuthNone
		cl.ID = ""
	}
	if err := c.authenticate(&rq, &cl, tokenURL); err != nil {
		return rq, err
	}
	return rq, nil
}

// signingAlg is the algorithm a key signs assertions with: RS256 for RSA
// keys, ES256, ES384 or ES512 for EC keys by their curve; "" for others.
func signingAlg(key crypto.Signer) jose.SignatureAlgorithm {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return jose.RS256
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return jose.ES256
		case 384:
			return jose.ES384
		default:
			return jose.ES512
		}
	}
	return ""
}

// signJWT signs claims with the key's signingAlg.
func signJWT(key crypto.Signer, kid string, claims jwt.Claims) (string, error) {
	alg := signingAlg(key)
	if alg == "" {
		return "", fmt.Errorf("unsupported key type %T", key)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
