package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// externalURLHelp is the help of --web.external-url, as Prometheus and
// Alertmanager word theirs.
const externalURLHelp = "The URL under which tokenwatch is externally reachable (for example, if tokenwatch is served via a reverse proxy). " +
	"Alerts link to it: the webhook payload's externalURL, and each alert's generatorURL (<url>/#org-<org>, the org on the status page). " +
	"If omitted, http://<hostname>:<port of --web.listen-address>. tokenwatch serves at the root whatever its path."

// externalURL is the URL under which tokenwatch is reachable: flag when
// set, else derived from the host name and the first listen address, as
// Prometheus does. It has no trailing slash.
func externalURL(flag string, listenAddresses []string) (string, error) {
	if flag == "" {
		host, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("no host name for the default external URL (set --web.external-url): %w", err)
		}
		port := "9851"
		if len(listenAddresses) > 0 {
			_, p, err := net.SplitHostPort(listenAddresses[0])
			if err != nil {
				return "", fmt.Errorf("--web.listen-address %q: %w", listenAddresses[0], err)
			}
			port = p
		}
		flag = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(flag)
	if err != nil {
		return "", fmt.Errorf("--web.external-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("--web.external-url %q: want an absolute http or https URL, e.g. https://tokenwatch.example.com/", flag)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("--web.external-url %q: want no user, query or fragment", flag)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}
