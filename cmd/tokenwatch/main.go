// Command tokenwatch watches OAuth 2.0 connections: on a schedule it obtains
// a token for every configured org, introspects it, confirms it with a
// resource call, revokes it, and exports what it saw as Prometheus metrics.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
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

// appHelp is the one line of `tokenwatch --help` above the commands.
const appHelp = "Monitors OAuth 2.0 connections and exports what it sees to Prometheus."

// commands are the parsed command line's subcommands, by their names.
type commands struct {
	run, checkConfig, diagnose, demo, version *kingpin.CmdClause
	// demoWeb and demo are the demo's listener and options.
	demoWeb  *web.FlagConfig
	demoOpts *demoOptions
}

// newApp defines the command line: its flags fill c. Help goes to stdout
// (tokenwatch --help | less), errors to stderr.
func newApp(c *cli, stdout, stderr io.Writer) (*kingpin.Application, *commands) {
	setVersionDefaults()
	app := kingpin.New("tokenwatch", appHelp)
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	app.Version(version.Print("tokenwatch"))
	promslogflag.AddFlags(app, c.log)
	cmds := &commands{}

	configHelp := "Configuration file of tokenwatch (YAML: global settings, orgs, alerting; see docs/configuration.md)."
	cmds.run = app.Command("run", "Run the daemon (the default command): check every org on its schedule, serve "+
		"/metrics, /probe and the status page, send alerts. SIGHUP or POST /-/reload reloads the configuration.").Default()
	cmds.run.Flag("config.file", configHelp).Default("tokenwatch.yml").StringVar(&c.configFile)
	cmds.run.Flag("shard", "Check only the orgs whose name hashes to shard i of N replicas (e.g. 0/3 for the first "+
		"pod of a three-replica StatefulSet). Unset: every org.").PlaceHolder("i/N").StringVar(&c.shard)
	cmds.run.Flag("storage.path", "Directory of the durable state: rotated refresh tokens, alert state and last results "+
		"(made with mode 0700; one tokenwatch per directory).").Default("data/").StringVar(&c.storage)
	c.web = kingpinflag.AddFlags(cmds.run, defaultListen)
	cmds.run.Flag("web.external-url", externalURLHelp).PlaceHolder("URL").StringVar(&c.externalURL)

	cmds.checkConfig = app.Command("check-config", "Validate the configuration file: exit 0 when valid, "+
		"1 naming every problem by its field path.")
	cmds.checkConfig.Flag("config.file", configHelp).Default("tokenwatch.yml").StringVar(&c.configFile)

	cmds.diagnose = app.Command("diagnose", "Run each org's check once and explain it step by step, with the fix. "+
		"Exit 0 all healthy, 1 some unhealthy, 2 usage or configuration error.")
	cmds.diagnose.Flag("config.file", configHelp).Default("tokenwatch.yml").StringVar(&c.configFile)
	cmds.diagnose.Flag("org", "Check only this org (repeat the flag for more). Unset: every org.").PlaceHolder("NAME").StringsVar(&c.orgs)
	cmds.diagnose.Flag("output", "Output format: text for people, json for scripts.").Default("text").EnumVar(&c.output, "text", "json")

	cmds.demo = app.Command("demo", "Run the agent against simulated Salesforce-like orgs in-process, "+
		"and print the URLs to open.")
	cmds.demoWeb = kingpinflag.AddFlags(cmds.demo, defaultListen)
	cmds.demoOpts = addDemoFlags(cmds.demo)
	cmds.demo.Flag("storage.path", "Directory of the durable state. Unset: a temporary one, removed at exit.").
		PlaceHolder("DIR").StringVar(&c.storage)
	cmds.demo.Flag("web.external-url", externalURLHelp).PlaceHolder("URL").StringVar(&c.externalURL)

	cmds.version = app.Command("version", "Print the version, revision, branch, build date and Go version.")
	return app, cmds
}

// setVersionDefaults fills in the version of a binary built without the
// release's -ldflags (-X github.com/prometheus/common/version.Version=...,
// as .goreleaser.yaml and deploy/Dockerfile set it): the module version of
// `go install ...@vX.Y.Z`, else "dev".
func setVersionDefaults() {
	if version.Version != "" {
		return
	}
	version.Version = "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && strings.HasPrefix(bi.Main.Version, "v") {
		version.Version = strings.TrimPrefix(bi.Main.Version, "v")
	}
}

func realMain(args []string, stdout, stderr io.Writer) int {
	c := &cli{log: &promslog.Config{Writer: stderr}}
	app, cmds := newApp(c, stdout, stderr)
	run, checkConfig, diagnose, demo, versionCmd := cmds.run, cmds.checkConfig, cmds.diagnose, cmds.demo, cmds.version
	demoWeb, demoOpts := cmds.demoWeb, cmds.demoOpts

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
