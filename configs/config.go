package configs

import (
	"strings"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/tokenwatch/tokenwatch/checks"
)

// Config is a loaded, defaulted and validated tokenwatch configuration.
type Config struct {
	Global Global
	// Orgs are those of orgs: followed by those of org_files, file by file.
	Orgs []Org
	// OrgFiles are the org_files patterns and the files they matched.
	OrgFiles OrgFiles
	// Alerting is always set: its thresholds have defaults even when the
	// file has no alerting section, and then there are no destinations.
	Alerting Alerting
}

// Global holds the settings every org inherits unless it overrides them.
type Global struct {
	// Schedule is a robfig/cron spec, e.g. "@every 1m" or "CRON_TZ=UTC */5 * * * *".
	Schedule string
	// Timeout bounds each HTTP request of a check.
	Timeout             time.Duration
	MaxConcurrentChecks int
	// LoginBudget is how many token requests an hour one identity (token
	// endpoint host and username, or client id) may make, shared by its orgs.
	LoginBudget int
	Backoff     Backoff
	Probe       Probe
	// Metrics is every org's metrics settings unless it sets its own.
	Metrics Metrics
}

// Backoff spaces the logins of an org whose login was rejected
// (client_rejected, grant_rejected, rate_limited, refresh_token_retired).
type Backoff struct {
	// Initial is the first wait; each further rejection doubles it, up to Max.
	Initial, Max time.Duration
}

// Probe bounds what /probe may do.
type Probe struct {
	// MaxAge: /probe answers the last result when it is younger than this.
	MaxAge time.Duration
	// MaxConcurrent checks run for /probe at once, apart from scheduled ones.
	MaxConcurrent int
	// Timeout bounds a /probe when Prometheus sends no scrape timeout header.
	Timeout time.Duration
}

// Org is one OAuth connection to check: the checks' own Target, which the
// loader fills in directly (one definition of an org, not a copy), plus
// what only the agent needs. Every field is defaulted: a consumer never has
// to repeat the defaulting rules. *_file paths are absolute after loading;
// secrets and private keys are already read.
type Org struct {
	checks.Target
	// Schedule is a robfig/cron spec; the global one when the org sets none.
	Schedule string
	// HTTPClient is how the org's endpoints are reached (tls, proxy_url,
	// ...), the settings Prometheus users know; see Org.Transport.
	HTTPClient promconfig.HTTPClientConfig
	// Metrics says which opt-in series the org has; the global settings
	// when the org sets none. Org.Info carries them to the collector.
	Metrics Metrics
}

// Problem is one thing wrong with a configuration, at a field path such as
// "orgs[2].grant.password_file", or an environment variable name when the
// value came from one. A problem in a file of org_files has the file, then
// the field path inside it: "orgs.d/acme.yml: [2].grant.password_file".
type Problem struct {
	Path    string
	Message string
}

// String renders the problem as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is every problem found in a configuration. Load and Parse return
// it as their error so a user can fix everything in one go.
type Problems []Problem

// Error lists every problem, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
