package agent

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/configs"
)

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
func tlsFingerprint(t promconfig.TLSConfig) string {
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
