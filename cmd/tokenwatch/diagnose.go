package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
)

// runCheckConfig is `tokenwatch check-config`.
func runCheckConfig(path string, stdout, stderr io.Writer) int {
	cfg, err := configs.Load(path, os.Environ())
	if err != nil {
		printConfigError(stderr, path, err)
		return exitUnhealthy
	}
	fmt.Fprintf(stdout, "%s: valid, %d org(s)\n", path, len(cfg.Orgs))
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return exitOK
}

func printConfigError(w io.Writer, path string, err error) {
	var problems configs.Problems
	if errors.As(err, &problems) {
		fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(problems))
		for _, p := range problems {
			fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Message)
		}
		return
	}
	fmt.Fprintf(w, "%s: %s\n", path, err)
}

// diagnosis is the JSON form of one org's diagnose output.
type diagnosis struct {
	Org      string            `json:"org"`
	Provider string            `json:"provider"`
	Grant    string            `json:"grant"`
	Labels   map[string]string `json:"labels,omitempty"`
	Healthy  bool              `json:"healthy"`
	Result   *checks.Result    `json:"result"`
}

// runDiagnose is `tokenwatch diagnose`: each selected org's check once, explained.
func runDiagnose(path string, only []string, output string, stdout, stderr io.Writer) int {
	cfg, err := configs.Load(path, os.Environ())
	if err != nil {
		printConfigError(stderr, path, err)
		return exitUsage
	}
	var orgs []configs.Org
	var skipped []string
	for _, o := range cfg.Orgs {
		if len(only) > 0 && !slices.Contains(only, o.Name) {
			continue
		}
		// With rotation, using the configured refresh token here would retire the
		// one a running daemon holds; run such an org only when named explicitly.
		if len(only) == 0 && o.Grant.Type == checks.GrantRefreshToken {
			skipped = append(skipped, o.Name)
			continue
		}
		orgs = append(orgs, o)
	}
	for _, name := range only {
		if !slices.ContainsFunc(orgs, func(o configs.Org) bool { return o.Name == name }) {
			fmt.Fprintf(stderr, "%s: no org named %q (configured: %s)\n", path, name, orgNames(cfg))
			return exitUsage
		}
	}
	for _, name := range skipped {
		fmt.Fprintf(stderr, "org %s skipped: it uses a refresh token, and with refresh token rotation a diagnose would "+
			"retire the token a running tokenwatch holds; name it with --org %s to run it anyway\n", name, name)
	}
	results, err := diagnoseAll(orgs, cfg.Global.MaxConcurrentChecks)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", path, err)
		return exitUsage
	}

	code := exitOK
	var out []diagnosis
	for i, o := range orgs {
		t := o.Target
		r := results[i]
		if !r.Success() {
			code = exitUnhealthy
		}
		out = append(out, diagnosis{Org: t.Name, Provider: t.Provider, Grant: t.Grant.Type, Labels: t.Labels, Healthy: r.Success(), Result: r})
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"orgs": out}); err != nil {
			fmt.Fprintf(stderr, "writing JSON: %s\n", err)
			return exitUsage
		}
		return code
	}
	for i, d := range out {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		writeDiagnosis(stdout, d, time.Now())
	}
	return code
}

func orgNames(cfg *configs.Config) string {
	names := make([]string, 0, len(cfg.Orgs))
	for _, o := range cfg.Orgs {
		names = append(names, o.Name)
	}
	return strings.Join(names, ", ")
}

// diagnoseAll runs the checks concurrently, at most limit at a time, keeping order.
func diagnoseAll(orgs []configs.Org, limit int) ([]*checks.Result, error) {
	transports := make([]http.RoundTripper, len(orgs))
	for i, o := range orgs {
		rt, err := o.Transport()
		if err != nil {
			return nil, err
		}
		transports[i] = rt
	}
	results := make([]*checks.Result, len(orgs))
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, o := range orgs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			timeout := o.Timeout
			if timeout <= 0 {
				timeout = checks.DefaultTimeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*timeout+time.Second)
			defer cancel()
			c := checks.NewChecker(o.Target, checks.WithTransport(transports[i]))
			results[i] = c.Check(ctx)
			c.Close(ctx)
		})
	}
	wg.Wait()
	return results, nil
}

// writeDiagnosis explains one result step by step, in plain words.
func writeDiagnosis(w io.Writer, d diagnosis, now time.Time) {
	r := d.Result
	fmt.Fprintf(w, "org %s (provider %s, grant %s)\n", d.Org, d.Provider, d.Grant)
	for i, s := range r.Steps {
		fmt.Fprintf(w, "  %d. %-10s ", i+1, s.Step)
		if s.Skipped {
			fmt.Fprintf(w, "skipped: %s\n", s.Detail)
			continue
		}
		fmt.Fprintf(w, "%s %s\n", s.Method, s.URL)
		if len(s.Sent) > 0 {
			fmt.Fprintf(w, "     %-10s sent: %s (values withheld)\n", "", strings.Join(s.Sent, ", "))
		}
		status := "no answer"
		if s.Status != 0 {
			status = fmt.Sprintf("HTTP %d", s.Status)
		}
		p := s.Phases
		fmt.Fprintf(w, "     %-10s %s in %s (resolve %s, connect %s, tls %s, processing %s, transfer %s)\n", "",
			status, ms(s.Duration), ms(p.Resolve), ms(p.Connect), ms(p.TLS), ms(p.Processing), ms(p.Transfer))
		mark := "ok"
		if s.Outcome != checks.OutcomeOK {
			mark = string(s.Outcome)
		}
		fmt.Fprintf(w, "     %-10s %s: %s\n", "", mark, s.Detail)
	}
	f := r.Token
	fmt.Fprintf(w, "  token:     %s\n", tokenSummary(f, now))
	if org := orgSummary(r, now); org != "" {
		fmt.Fprintf(w, "  org:       %s\n", org)
	}
	state := "HEALTHY"
	if !r.Success() {
		state = "UNHEALTHY"
	}
	fmt.Fprintf(w, "  verdict:   %s, outcome %s (check took %s)\n", state, r.Outcome, ms(r.Duration))
	fmt.Fprintf(w, "  why:       %s\n", r.Explanation)
	if r.Fix != "" {
		fmt.Fprintf(w, "  fix:       %s\n", r.Fix)
	}
}

func tokenSummary(f checks.TokenFacts, now time.Time) string {
	var parts []string
	if !f.IssuedAt.IsZero() {
		parts = append(parts, "issued "+f.IssuedAt.UTC().Format(time.RFC3339))
	}
	if !f.Expiry.IsZero() {
		parts = append(parts, fmt.Sprintf("expires %s (remaining %s, from %s)", f.Expiry.UTC().Format(time.RFC3339), f.Expiry.Sub(now).Round(time.Second), f.ExpirySource))
	} else {
		parts = append(parts, "expiry unknown")
	}
	if lt := f.Lifetime(); lt > 0 {
		parts = append(parts, "lifetime "+lt.String())
	}
	add := func(name, v string) {
		if v != "" {
			parts = append(parts, name+" "+v)
		}
	}
	add("scope", f.Scope)
	add("user", f.Username)
	add("subject", f.Subject)
	add("client_id", f.ClientID)
	add("token_type", f.TokenType)
	add("signature", f.Signature)
	if f.ClockSkew != 0 {
		parts = append(parts, "server clock differs by "+f.ClockSkew.String())
	}
	return strings.Join(parts, ", ")
}

// orgSummary says what the check learned about the org beyond the token:
// its daily API allowance, and when the signing certificate and the
// refresh token expire; each with a warning when it is close.
func orgSummary(r *checks.Result, now time.Time) string {
	var parts []string
	if a := r.APIRequests; a != nil {
		s := fmt.Sprintf("daily API requests %d of %d remaining", a.Remaining, a.Max)
		if a.Max > 0 && float64(a.Remaining) < checks.APIRequestsWarning*float64(a.Max) {
			s += " (WARNING: below 10%; at 0 every integration of the org gets REQUEST_LIMIT_EXCEEDED)"
		}
		parts = append(parts, s)
	}
	expiry := func(what string, at time.Time, warn time.Duration) {
		if at.IsZero() {
			return
		}
		s := fmt.Sprintf("%s expires %s (in %s)", what, at.UTC().Format(time.RFC3339), at.Sub(now).Round(time.Hour))
		if at.Sub(now) < warn {
			s += " (WARNING)"
		}
		parts = append(parts, s)
	}
	expiry("signing certificate (grant.certificate_file)", r.SigningCertExpiry, checks.SigningCertificateWarning)
	expiry("refresh token (grant.refresh_token_policy)", r.RefreshTokenExpiry, checks.RefreshTokenWarning)
	return strings.Join(parts, "; ")
}

func ms(d time.Duration) string {
	if d == 0 {
		return "0ms"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
