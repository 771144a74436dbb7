package agent

import (
	"encoding/json"
	"net/http"
	"reflect"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/configs"
)

// idleConnTimeout closes a connection idle this long. A check sends its
// four requests back to back, so it keeps its connection for them; checks
// of other orgs at the same host within that time reuse it. Idle
// connections (and the two goroutines each holds) then follow the rate of
// checks, not the number of orgs, as they would with one org's connection
// kept from one check to the next (prometheus/common's default is 5 min).
const idleConnTimeout = 3 * time.Second

// sharedTransport is the transport of every org with one HTTP client
// configuration: most orgs have none (no TLS files, no proxy), so they
// share one transport and one pool of connections.
type sharedTransport struct {
	key string
	cfg promconfig.HTTPClientConfig
	rt  http.RoundTripper
}

// transportPool holds the transports in use by key (transportKey); within
// a key, settings that differ only in a secret value are told apart by
// comparing them whole.
type transportPool map[string][]*sharedTransport

// transportKey is the JSON of an org's HTTP client settings, secrets
// redacted by prometheus/common: never a secret in a map key.
func transportKey(c promconfig.HTTPClientConfig) string {
	b, err := json.Marshal(c) //nolint:gosec // G117: prometheus/common marshals its Secret fields as <secret>
	if err != nil {
		// Cannot happen with prometheus/common's types; all such orgs
		// share one key and are told apart by comparison.
		return ""
	}
	return string(b)
}

func (p transportPool) find(key string, c promconfig.HTTPClientConfig) *sharedTransport {
	for _, t := range p[key] {
		if reflect.DeepEqual(t.cfg, c) {
			return t
		}
	}
	return nil
}

// add puts t in the pool unless it is there.
func (p transportPool) add(t *sharedTransport) {
	for _, have := range p[t.key] {
		if have == t {
			return
		}
	}
	p[t.key] = append(p[t.key], t)
}

// transport returns the transport of o's settings: one p already holds
// (another org of this configuration), else the running configuration's
// (prev), else a new one. It is added to p.
func (p transportPool) transport(prev transportPool, o configs.Org) (*sharedTransport, error) {
	key := transportKey(o.HTTPClient)
	t := p.find(key, o.HTTPClient)
	if t == nil {
		t = prev.find(key, o.HTTPClient)
	}
	if t == nil {
		rt, err := o.Transport(promconfig.WithIdleConnTimeout(idleConnTimeout))
		if err != nil {
			return nil, err
		}
		t = &sharedTransport{key: key, cfg: o.HTTPClient, rt: rt}
	}
	p.add(t)
	return t, nil
}
