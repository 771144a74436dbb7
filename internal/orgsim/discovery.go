package orgsim

import (
	"net/http"
)

// discovery is the OpenID Connect discovery document, trimmed to what a
// client of this org can use.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
}

func (o *Org) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	base := o.baseURL(r)
	writeJSON(w, http.StatusOK, discovery{
		Issuer:                            base,
		AuthorizationEndpoint:             base + "/services/oauth2/authorize",
		TokenEndpoint:                     base + "/services/oauth2/token",
		RevocationEndpoint:                base + "/services/oauth2/revoke",
		UserinfoEndpoint:                  base + "/services/oauth2/userinfo",
		JWKSURI:                           base + "/id/keys",
		RegistrationEndpoint:              base + "/services/oauth2/register",
		IntrospectionEndpoint:             base + "/services/oauth2/introspect",
		ScopesSupported:                   []string{"id", "api", "web", "full", "chatter_api", "visualforce", "refresh_token", "openid", "profile", "email", "address", "phone", "offline_access", "custom_permissions", "wave_api", "eclair_api"},
		ResponseTypesSupported:            []string{"code", "token", "token id_token"},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", "password", "client_credentials", grantTypeJWTBearer},
		ClaimsSupported: []string{"active", "address", "email", "email_verified", "family_name", "given_name", "is_app_installed",
			"language", "locale", "name", "nickname", "organization_id", "phone_number", "phone_number_verified", "photos",
			"picture", "preferred_username", "profile", "sub", "updated_at", "urls", "user_id", "user_type", "zoneinfo"},
	})
}

// serveKeys publishes an empty key set: the org signs no id tokens.
func (o *Org) serveKeys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]struct{}{"keys": {}})
}
