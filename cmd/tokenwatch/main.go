// Command tokenwatch watches OAuth 2.0 connections: on a schedule it obtains
// a token for every configured org, introspects it, confirms it with a
// resource call, revokes it, and exports what it saw as Prometheus metrics.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
)

const defaultListen = ":9851"

// Exit codes of diagnose and check-config.
const (
	exitOK        = 0
	exitUnhealthy = 1
	exitUsage     = 2
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// cli holds the parsed command line.
type cli struct {
	configFile string
	web        *web.FlagConfig
	log        *promslog.Config
	shard      string
	orgs       []string
	output     string
	storage    string
	// externalURL is --web.external-url of run and demo.
	externalURL string
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if version.Version == "" {
		version.Version = "dev"
	}
	c := &cli{log: &promslog.Config{Writer: stderr}}
	app := kingpin.New("tokenwatch", "Watches OAuth 2.0 token issuance and introspection for every configured org, and exports what it sees to Prometheus.")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	app.Version(version.Print("tokenwatch"))
	promslogflag.AddFlags(app, c.log)

	run := app.Command("run", "Run the daemon (the default command).").Default()
	run.Flag("config.file", "tokenwatch configuration file.").Default("tokenwatch.yml").StringVar(&c.configFile)
	run.Flag("shard", "Check only the orgs whose name hashes to this shard, as i/N (e.g. a StatefulSet ordinal: 0/3).").Default("").StringVar(&c.shard)
	run.Flag("storage.path", "Directory of the durable state: rotated refresh tokens, alert state, last results (mode 0700, one instance per directory).").
		Default("data/").StringVar(&c.storage)
	c.web = kingpinflag.AddFlags(run, defaultListen)
	run.Flag("web.external-url", externalURLHelp).Default("").StringVar(&c.externalURL)

	checkConfig := app.Command("check-config", "Validate the configuration file; exit 0 when valid, 1 listing every problem.")
	checkConfig.Flag("config.file", "tokenwatch configuration file.").Default("tokenwatch.yml").StringVar(&c.configFile)

	diagnose := app.Command("diagnose", "Run each org's check once and explain it step by step. Exit 0 all healthy, 1 some unhealthy, 2 usage or config error.")
	diagnose.Flag("config.file", "tokenwatch configuration file.").Default("tokenwatch.yml").StringVar(&c.configFile)
	diagnose.Flag("org", "Check only this org (repeatable).").StringsVar(&c.orgs)
	diagnose.Flag("output", "Output format: text or json.").Default("text").EnumVar(&c.output, "text", "json")

	demo := app.Command("demo", "Start simulated Salesforce-like orgs in-process and run the agent against them.")
	demoWeb := kingpinflag.AddFlags(demo, defaultListen)
	demoOpts := addDemoFlags(demo)
	demo.Flag("storage.path", "Directory of the durable state; empty: a temporary one, removed at exit.").Default("").StringVar(&c.storage)
	demo.Flag("web.external-url", externalURLHelp).Default("").StringVar(&c.externalURL)

	versionCmd := app.Command("version", "Print the version.")

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "tokenwatch: %s (see --help)\n", err)
		return exitUsage
	}
	logger := promslog.New(c.log)
	switch cmd {
	case run.FullCommand():
		shard, shards, err := parseShard(c.shard)
		if err != nil {
			fmt.Fprintf(stderr, "tokenwatch: --shard: %s\n", err)
			return exitUsage
		}
		extURL, err := externalURL(c.externalURL, *c.web.WebListenAddresses)
		if err != nil {
			fmt.Fprintf(stderr, "tokenwatch: %s\n", err)
			return exitUsage
		}
		return runDaemon(daemonOptions{
			logger: logger, web: c.web, load: fileLoader(c.configFile), shard: shard, shards: shards, storage: c.storage,
			externalURL: extURL,
		})
	case checkConfig.FullCommand():
		return runCheckConfig(c.configFile, stdout, stderr)
	case diagnose.FullCommand():
		return runDiagnose(c.configFile, c.orgs, c.output, stdout, stderr)
	case demo.FullCommand():
		extURL, err := externalURL(c.externalURL, *demoWeb.WebListenAddresses)
		if err != nil {
			fmt.Fprintf(stderr, "tokenwatch: %s\n", err)
			return exitUsage
		}
		demoOpts.externalURL = extURL
		return runDemo(logger, demoWeb, *demoOpts, c.storage, stdout)
	case versionCmd.FullCommand():
		fmt.Fprintln(stdout, version.Print("tokenwatch"))
		return exitOK
	}
	return exitUsage
}

// parseShard reads "i/N".
func parseShard(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	i, n, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("want i/N, e.g. 0/3, got %q", s)
	}
	shard, err1 := strconv.Atoi(i)
	shards, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || shards < 1 || shard < 0 || shard >= shards {
		return 0, 0, fmt.Errorf("want i/N with 0 <= i < N, got %q", s)
	}
	return shard, shards, nil
}
