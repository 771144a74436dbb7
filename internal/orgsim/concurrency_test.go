package orgsim_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// TestConcurrentChecks runs whole checks (token, introspect, probe, revoke)
// from many goroutines against two orgs in one process.
func TestConcurrentChecks(t *testing.T) {
	orgs := []*orgsim.Org{
		orgsim.New(orgsim.Options{OrgID: "00D000000000001AAA"}),
		orgsim.New(orgsim.Options{OrgID: "00D000000000002AAA"}),
	}
	for _, o := range orgs {
		o.AddUser(orgsim.User{Username: username, Password: password, SecurityToken: securityToken})
		o.AddApp(orgsim.App{ClientID: allID, ClientSecret: allSecret, IntrospectAll: true})
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		defer o.Close()
	}
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(u string, form url.Values) (int, string, error) {
		resp, err := client.PostForm(u, form)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 16 {
		wg.Go(func() {
			o := orgs[i%len(orgs)]
			for range 20 {
				status, body, err := post(o.URL()+"/services/oauth2/token", passwordForm(allID, allSecret))
				if err != nil || status != 200 {
					errs <- "token: " + http.StatusText(status)
					return
				}
				tok := body[strings.Index(body, `"access_token":"`)+16:]
				tok = tok[:strings.IndexByte(tok, '"')]
				if !strings.HasPrefix(tok, o.OrgID()[:15]+"!") {
					errs <- "token from the wrong org"
					return
				}
				status, body, err = post(o.URL()+"/services/oauth2/introspect", url.Values{"token": {tok}, "client_id": {allID}, "client_secret": {allSecret}})
				if err != nil || status != 200 || !strings.Contains(body, `"active":true`) {
					errs <- "introspect: not active"
					return
				}
				if status, _, err = post(o.URL()+"/services/oauth2/revoke", url.Values{"token": {tok}}); err != nil || status != 200 {
					errs <- "revoke: " + http.StatusText(status)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := orgs[0].Requests(orgsim.EndpointAll) + orgs[1].Requests(orgsim.EndpointAll); n != 16*20*3 {
		t.Errorf("requests served = %d, want %d", n, 16*20*3)
	}
}

func BenchmarkPasswordGrant(b *testing.B) {
	org := orgsim.New(orgsim.Options{})
	org.AddUser(orgsim.User{Username: username, Password: password, SecurityToken: securityToken})
	org.AddApp(orgsim.App{ClientID: webID, ClientSecret: webSecret})
	if err := org.Start(); err != nil {
		b.Fatal(err)
	}
	defer org.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := passwordForm(webID, webSecret).Encode()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(org.URL()+"/services/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
