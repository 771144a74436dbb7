package checks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// net/http refuses a redirect whose Location it cannot parse before the
// redirect policy sees it; that is still an answer with a redirect, not a
// connection that failed (it read connect_error, or tls_error when the
// Location held "tls:").
func TestRedirectWithAnUnreadableLocationIsARedirect(t *testing.T) {
	for _, loc := range []string{"%", "%tls:", "https://idp.example/%"} {
		t.Run(loc, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", loc)
				w.WriteHeader(http.StatusTemporaryRedirect)
			}))
			defer srv.Close()
			tg := checks.Target{Name: "r", Provider: checks.ProviderGeneric, Timeout: time.Second,
				Endpoints: checks.Endpoints{Token: srv.URL + "/token"},
				Client:    checks.Client{ID: "id", Secret: ccSecret, AuthMethod: checks.AuthClientSecretBasic},
				Grant:     checks.Grant{Type: checks.GrantClientCredentials}, Probe: checks.ProbeNone, TokenMode: checks.TokenModeFresh}
			res := checks.NewChecker(tg).Check(context.Background())
			if res.Outcome != checks.OutcomeRedirect || !strings.Contains(res.Explanation, "Location is not a URL") {
				t.Errorf("outcome %s: %s", res.Outcome, res.Explanation)
			}
			if st := res.Step(checks.StepToken); st == nil || st.Outcome != checks.OutcomeRedirect {
				t.Errorf("token step %+v", st)
			}
		})
	}
}
