// Package tokenwatch is the root of the tokenwatch module: a daemon that
// watches OAuth 2.0 token issuance and introspection for every configured
// org and exports what it sees to Prometheus. The code lives in the
// packages below; this file holds the module's layout test.
package tokenwatch
