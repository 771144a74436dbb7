package agent

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"reflect"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
)

// Target turns one validated org of the configuration into what checks needs.
func Target(o configs.Org) (checks.Target, error) {
	tlsConfig, err := o.TLS.Build()
	if err != nil {
		return checks.Target{}, fmt.Errorf("org %s: tls: %w", o.Name, err)
	}
	t := checks.Target{
		Name:         o.Name,
		Provider:     o.Provider,
		URL:          o.URL,
		DiscoveryURL: o.DiscoveryURL,
		Endpoints: checks.Endpoints{
			Token:         o.TokenURL,
			Introspection: o.IntrospectionURL,
			Revocation:    o.RevocationURL,
			Userinfo:      o.UserinfoURL,
		},
		Timeout: o.Timeout,
		Client:  client(o.Client),
		Grant: checks.Grant{
			Type:         o.Grant.Type,
			Username:     o.Grant.Username,
			Password:     checks.Secret(o.Grant.Password.Reveal()),
			PrivateKey:   o.Grant.PrivateKey,
			KeyID:        o.Grant.KeyID,
			Audience:     o.Grant.Audience,
			RefreshToken: checks.Secret(o.Grant.RefreshToken.Reveal()),
			Scope:        o.Grant.Scope,
		},
		Introspection:   checks.Introspection{TokenTypeHint: o.Introspection.TokenTypeHint},
		Probe:           o.Probe,
		TokenMode:       o.TokenMode,
		VerifySignature: o.VerifySignature,
		TLS:             tlsConfig,
		Labels:          maps.Clone(o.Labels),
		Expect: checks.Expectations{
			MinLifetime:   o.Expect.MinLifetime,
			ScopeIncludes: o.Expect.ScopeIncludes,
			Username:      o.Expect.Username,
			ClientID:      o.Expect.ClientID,
		},
	}
	if ic := o.Introspection.Client; ic != nil {
		c := client(*ic)
		t.Introspection.Client = &c
	}
	return t, nil
}

func client(c configs.Client) checks.Client {
	return checks.Client{
		ID:         c.ID,
		Secret:     checks.Secret(c.Secret.Reveal()),
		AuthMethod: c.AuthMethod,
		PrivateKey: c.PrivateKey,
		KeyID:      c.KeyID,
	}
}

// sameOrg reports whether a reloaded org is unchanged, so its job, kept
// token and counters survive the reload. Keys are compared by value.
func sameOrg(a, b configs.Org) bool {
	if !sameKey(a.Client.PrivateKey, b.Client.PrivateKey) || !sameKey(a.Grant.PrivateKey, b.Grant.PrivateKey) {
		return false
	}
	a.Client.PrivateKey, b.Client.PrivateKey = nil, nil
	a.Grant.PrivateKey, b.Grant.PrivateKey = nil, nil
	ai, bi := a.Introspection.Client, b.Introspection.Client
	if (ai == nil) != (bi == nil) {
		return false
	}
	if ai != nil {
		if !sameKey(ai.PrivateKey, bi.PrivateKey) {
			return false
		}
		ac, bc := *ai, *bi
		ac.PrivateKey, bc.PrivateKey = nil, nil
		if !reflect.DeepEqual(ac, bc) {
			return false
		}
		a.Introspection.Client, b.Introspection.Client = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// tlsFingerprint digests the contents of the org's TLS files; an unreadable
// file digests as its error, which differs from any content.
func tlsFingerprint(t configs.TLS) string {
	h := sha256.New()
	for _, f := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if f == "" {
			h.Write([]byte{0})
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte(err.Error())
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sameKey(a, b crypto.Signer) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	eq, ok := a.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && eq.Equal(b)
}
