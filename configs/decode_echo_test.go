package configs

import (
	"errors"
	"strings"
	"testing"
)

// A value of the wrong type is named by its field path and its kind, never
// echoed: it may be a secret put under the wrong key, or hold one.
func TestWrongTypeNeverEchoesTheValue(t *testing.T) {
	const canary = "C4NARY-T1ME0UT-s3cr3t"
	org := "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}%s}\n"
	for _, tc := range []struct {
		name, yaml, path, kind string
	}{
		{"mapping", "global: {timeout: {X: " + canary + "}}\n" + strings.ReplaceAll(org, "%s", ""), "global.timeout", "a mapping"},
		{"list", strings.ReplaceAll(org, "%s", ", timeout: ["+canary+", 1]"), "orgs[0].timeout", "a list"},
		{"number", "global: {probe: {timeout: 42}}\n" + strings.ReplaceAll(org, "%s", ""), "global.probe.timeout", "a number"},
		{"boolean", strings.ReplaceAll(org, "%s", ", expect: {min_lifetime: true}"), "orgs[0].expect.min_lifetime", "a boolean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "", nil)
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Parse error = %v, want Problems", err)
			}
			msg := problems.Error()
			if strings.Contains(msg, canary) || strings.Contains(msg, "C4NARY") || strings.Contains(msg, "42") || strings.Contains(msg, "map[") {
				t.Errorf("the problem echoes the value: %s", msg)
			}
			want := tc.path + ": must be a duration"
			if !strings.Contains(msg, want) || !strings.Contains(msg, "got "+tc.kind) {
				t.Errorf("problems = %q, want %q naming the type (%s)", msg, want, tc.kind)
			}
		})
	}
}

// A string value that is wrong is named by its field path and what is
// wrong with it, never quoted: a secret typed under the wrong key, or a URL
// with a password in it, would be printed by check-config and logged on a
// failed reload. The canary is planted in every field whose problem once
// quoted the value (or a part of it: a URL's port, a schedule's field, a
// file's path), in the shapes that make each library quote it.
func TestProblemsNeverQuoteAStringValue(t *testing.T) {
	const canary = "C4NARY-v4lue"
	org := func(extra string) string {
		return "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}" + extra + "}\n"
	}
	generic := func(key, value string) string {
		return "orgs:\n  - {name: a, provider: generic, client: {id: a, secret: s}, grant: {type: client_credentials}, token_url: 'https://idp.example/token', " +
			key + ": " + value + "}\n"
	}
	alerting := func(dest string) string { return org("") + "alerting: {" + dest + "}\n" }
	for _, tc := range []struct {
		name, yaml string
		env        []string
		path       string
	}{
		{"global timeout", "global: {timeout: '" + canary + "'}\n" + org(""), nil, "global.timeout"},
		{"org timeout", org(", timeout: '" + canary + "'"), nil, "orgs[0].timeout"},
		{"min_lifetime", org(", expect: {min_lifetime: '" + canary + "'}"), nil, "orgs[0].expect.min_lifetime"},
		{"resend_interval", alerting("resend_interval: '" + canary + "'"), nil, "alerting.resend_interval"},
		{"global schedule", "global: {schedule: '" + canary + "'}\n" + org(""), nil, "global.schedule"},
		{"schedule minute", org(", schedule: '" + canary + " * * * *'"), nil, "orgs[0].schedule"},
		{"schedule weekday", org(", schedule: '*/5 * * * " + canary + "'"), nil, "orgs[0].schedule"},
		{"schedule range", org(", schedule: '1-" + canary + " * * * *'"), nil, "orgs[0].schedule"},
		{"schedule step", org(", schedule: '*/" + canary + " * * * *'"), nil, "orgs[0].schedule"},
		{"schedule time zone", org(", schedule: 'CRON_TZ=" + canary + " */5 * * * *'"), nil, "orgs[0].schedule"},
		{"schedule every", org(", schedule: '@every " + canary + "'"), nil, "orgs[0].schedule"},
		{"schedule descriptor", org(", schedule: '@" + canary + "'"), nil, "orgs[0].schedule"},
		{"name", "orgs:\n  - {name: '" + canary + " x', url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}}\n", nil, "orgs[0].name"},
		{"provider", org(", provider: '" + canary + "'"), nil, "orgs[0].provider"},
		{"url port", generic("introspection_url", "'https://idp.example:"+canary+"/introspect'"), nil, "orgs[0].introspection_url"},
		{"url host", generic("revocation_url", "'https://"+canary+" x/revoke'"), nil, "orgs[0].revocation_url"},
		{"url scheme", generic("userinfo_url", "'"+canary+"://idp.example/userinfo'"), nil, "orgs[0].userinfo_url"},
		{"url ipv6", generic("discovery_url", "'https://["+canary+"/.well-known/openid-configuration'"), nil, "orgs[0].discovery_url"},
		{"url escape", generic("introspection_url", "'https://idp.example/%zz"+canary+"'"), nil, "orgs[0].introspection_url"},
		{"url colon", generic("introspection_url", "'"+canary+":x/y'"), nil, "orgs[0].introspection_url"},
		{"url control character", generic("introspection_url", `"https://idp.example/\x7f`+canary+`"`), nil, "orgs[0].introspection_url"},
		{"url credentials", generic("introspection_url", "'https://user:"+canary+"@idp.example/introspect'"), nil, "orgs[0].introspection_url"},
		{"salesforce url scheme", "orgs:\n  - {name: a, url: '" + canary + "://a.example', client: {id: a, secret: s}, grant: {type: client_credentials}}\n", nil, "orgs[0].url"},
		{"probe", org(", probe: '" + canary + "'"), nil, "orgs[0].probe"},
		{"probe url", org(", probe: 'https://a.example:" + canary + "/x'"), nil, "orgs[0].probe"},
		{"token_mode", org(", token_mode: '" + canary + "'"), nil, "orgs[0].token_mode"},
		{"auth_method", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s, auth_method: '" + canary + "'}, grant: {type: client_credentials}}\n", nil, "orgs[0].client.auth_method"},
		{"grant type", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: '" + canary + "'}}\n", nil, "orgs[0].grant.type"},
		{"token_type_hint", org(", introspection: {token_type_hint: '" + canary + "'}"), nil, "orgs[0].introspection.token_type_hint"},
		{"min_version", org(", tls: {min_version: '" + canary + "'}"), nil, "orgs[0].tls.min_version"},
		{"secret_file", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret_file: '" + canary + "'}, grant: {type: client_credentials}}\n", nil, "orgs[0].client.secret_file"},
		{"password_file", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: password, username: u, password_file: '" + canary + "'}}\n", nil, "orgs[0].grant.password_file"},
		{"private_key_file", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a}, grant: {type: jwt_bearer, username: u, private_key_file: '" + canary + "'}}\n", nil, "orgs[0].grant.private_key_file"},
		{"ca_file", org(", tls: {ca_file: '" + canary + "'}"), nil, "orgs[0].tls.ca_file"},
		{"cert_file", org(", tls: {cert_file: '" + canary + "', key_file: '" + canary + "'}"), nil, "orgs[0].tls.cert_file"},
		{"alertmanager url", alerting("alertmanagers: [{url: '" + canary + "://am.example'}]"), nil, "alerting.alertmanagers[0].url"},
		{"webhook url", alerting("webhooks: [{url: 'https://hooks.example:" + canary + "/x'}]"), nil, "alerting.webhooks[0].url"},
		{"bearer_token_file", alerting("alertmanagers: [{url: 'https://am.example', bearer_token_file: '" + canary + "'}]"), nil, "alerting.alertmanagers[0].bearer_token_file"},
		{"refresh_token_policy", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: refresh_token, refresh_token: r, refresh_token_policy: {expire_after: '" + canary + "'}}}\n", nil, "orgs[0].grant.refresh_token_policy.expire_after"},
		{"certificate_file", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a}, grant: {type: jwt_bearer, username: u, private_key_file: ec-pkcs8.key, certificate_file: '" + canary + "'}}\n", nil, "orgs[0].grant.certificate_file"},
		{"org_files", "org_files: ['" + canary + "/[']\n" + org(""), nil, "org_files[0]"},
		{"env timeout", org(""), []string{"TOKENWATCH_GLOBAL_TIMEOUT=" + canary}, "TOKENWATCH_GLOBAL_TIMEOUT"},
		{"env schedule", org(""), []string{"TOKENWATCH_GLOBAL_SCHEDULE=" + canary + " * * * *"}, "TOKENWATCH_GLOBAL_SCHEDULE"},
		{"env max_concurrent_checks", org(""), []string{"TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS=" + canary}, "TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), t.TempDir(), tc.env)
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Parse error = %v, want Problems", err)
			}
			named := false
			for _, p := range problems {
				named = named || p.Path == tc.path
			}
			if !named {
				t.Errorf("no problem at %s: %v", tc.path, problems)
			}
			// Either half is a quote: messages cut values at '-' too.
			if msg := strings.ToLower(problems.Error()); strings.Contains(msg, "c4nary") || strings.Contains(msg, "v4lue") {
				t.Errorf("a problem quotes the value: %s", strings.NewReplacer("C4NARY", "<canary>", "v4lue", "<canary>").Replace(problems.Error()))
			}
		})
	}
}
