package configs

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tokenwatch/tokenwatch/checks"
)

// LoginIdentity names who an org logs in as, for the login budget: the
// token endpoint's host and the username, or the client id when the grant
// has none (client credentials, refresh token). Salesforce counts its limit
// of logins per user, so orgs sharing an integration user share a budget.
func (o Org) LoginIdentity() string {
	who := o.Grant.Username
	if who == "" {
		who = "client " + o.Client.ID
	}
	return loginHost(o) + " " + who
}

func loginHost(o Org) string {
	for _, raw := range []string{o.Endpoints.Token, o.URL, o.DiscoveryURL} {
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			return strings.ToLower(u.Host)
		}
	}
	return ""
}

// Warnings lists what is valid but likely to hurt or to mislead: a
// credential given for a grant that does not use it (the user may think it
// is used), and identities whose orgs would, by their schedules, log in more
// often than global.login_budget allows (the agent defers the logins beyond
// it; token_mode reuse is not counted: it logs in only when its token dies).
func (c *Config) Warnings() []string {
	out := unusedCredentials(c.Orgs)
	out = append(out, salesforceIntrospectionWarnings(c.Orgs)...)
	return append(out, c.budgetWarnings()...)
}

// unusedCredentials names the password, refresh token or assertion key an
// org sets for a grant that sends none of them.
func unusedCredentials(orgs []Org) []string {
	var out []string
	for i, o := range orgs {
		g := o.Grant
		unused := func(set bool, key, usedBy string) {
			if set && g.Type != usedBy {
				out = append(out, fmt.Sprintf("orgs[%d].grant.%s is set but grant type %s does not use it (only %s does); remove it",
					i, key, g.Type, usedBy))
			}
		}
		unused(g.Password != "", "password", checks.GrantPassword)
		unused(g.RefreshToken != "", "refresh_token", checks.GrantRefreshToken)
		unused(g.PrivateKey != nil, "private_key_file", checks.GrantJWTBearer)
	}
	return out
}

func (c *Config) budgetWarnings() []string {
	type use struct {
		orgs    []string
		perHour float64
	}
	uses := map[string]*use{}
	for _, o := range c.Orgs {
		if o.TokenMode == checks.TokenModeReuse {
			continue
		}
		id := o.LoginIdentity()
		u := uses[id]
		if u == nil {
			u = &use{}
			uses[id] = u
		}
		u.orgs = append(u.orgs, o.Name)
		u.perHour += runsPerHour(o.Schedule)
	}
	var out []string
	for _, id := range slices.Sorted(maps.Keys(uses)) {
		u := uses[id]
		if u.perHour <= float64(c.Global.LoginBudget) {
			continue
		}
		out = append(out, fmt.Sprintf("orgs %s log in as %s about %.0f times an hour, more than global.login_budget (%d): "+
			"checks beyond the budget are deferred. Lengthen their schedules, use token_mode: reuse, or raise the budget "+
			"(Salesforce allows 3,600 logins per user per hour and locks users after repeated failures).",
			strings.Join(u.orgs, ", "), id, u.perHour, c.Global.LoginBudget))
	}
	return out
}

// runsPerHour counts a schedule's runs in the coming hour (0 for a spec that
// does not parse: validation reports it).
func runsPerHour(spec string) float64 {
	s, err := ParseSchedule(spec)
	if err != nil {
		return 0
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok && every.Delay > 0 {
		return float64(time.Hour) / float64(every.Delay)
	}
	// The busiest hour of the coming day, so "*/5 9-17 * * *" counts 12, not a daily average.
	start := time.Now().UTC().Truncate(time.Hour)
	var perHour [24]int
	for t := s.Next(start); !t.IsZero(); t = s.Next(t) {
		h := int(t.Sub(start) / time.Hour)
		if h < 0 || h >= len(perHour) {
			break
		}
		perHour[h]++
	}
	return float64(slices.Max(perHour[:]))
}
