// Package configs loads tokenwatch's YAML configuration into validated Go
// values: it reads the file with koanf, applies environment overrides,
// resolves secrets, fills in defaults and reports every problem with its
// field path, so a Config it returns is ready to use.
//
// The file has these sections (keys are snake_case; unknown keys are errors):
//
//	global:
//	  schedule               robfig/cron spec (default "@every 1m"); "CRON_TZ=UTC 0 * * * *" works
//	  timeout                per HTTP request, Go duration (default 10s, at most 5m)
//	  max_concurrent_checks  default 32
//	org_files                globs of more files, each a list of orgs (the keys of orgs: entries);
//	                         relative to this file, their *_file paths relative to themselves
//	orgs:                    one entry per OAuth connection
//	  - name                 unique, ^[A-Za-z0-9][A-Za-z0-9._-]*$; the org label
//	    provider             salesforce (default) | generic
//	    url                  salesforce: the My Domain base URL
//	    discovery_url        generic: RFC 8414 / OpenID discovery document
//	    token_url, introspection_url, revocation_url, userinfo_url   explicit endpoints
//	    schedule, timeout    override global
//	    client:              id, secret | secret_file, auth_method, private_key_file, key_id
//	    grant:               type (password | client_credentials | jwt_bearer | refresh_token),
//	                         username, password | password_file, private_key_file, key_id,
//	                         audience, refresh_token | refresh_token_file, scope
//	    introspection:       client (same keys as client), token_type_hint
//	    probe                userinfo (default) | none | URL called with the token
//	    token_mode           fresh (default) | reuse
//	    verify_signature     salesforce only; default true when the client has a secret
//	    tls:                 ca_file, cert_file, key_file, server_name, insecure_skip_verify
//	    labels:              extra labels for the org's series and alerts
//	    expect:              min_lifetime, scope_includes, username, client_id
//	alerting:                optional; the agent's own alerts
//	  failure_threshold      consecutive bad checks before an alert fires (default 2)
//	  success_threshold      consecutive good checks before it resolves (default 1)
//	  resend_interval        firing alerts re-sent to Alertmanager (default 1m, at least 1s)
//	  expires_soon_threshold TokenExpiresSoon for a kept token (token_mode reuse) whose exp
//	                         is closer than this (default 10m; 0s turns it off)
//	  alertmanagers:         API v2; url, basic_auth {username, password | password_file},
//	                         bearer_token | bearer_token_file, tls (as for orgs), timeout (default 10s)
//	  webhooks:              url, secret | secret_file (HMAC-SHA256 key of the signature header),
//	                         send_resolved (default true), timeout (default 10s)
//
// Secrets (secret, password, refresh_token, bearer_token) are given inline, as "${NAME}"
// read from the environment passed to Load, or through the matching *_file
// key (one trailing newline is dropped). Relative *_file paths resolve
// against the configuration file's directory. Secret values print as
// <secret> and appear in no error.
//
// TOKENWATCH_GLOBAL_SCHEDULE, TOKENWATCH_GLOBAL_TIMEOUT and
// TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS override the global section; any
// other TOKENWATCH_GLOBAL_* variable is a problem, so a typo is not ignored.
package configs
