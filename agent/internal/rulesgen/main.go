// Command rulesgen writes configs/prometheus/tokenwatch-rules.yml and the
// generated tables of docs/alerting.md from the agent's alert definitions
// (agent/alertdefs.go). Run it with go generate ./agent.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tokenwatch/tokenwatch/agent/internal/promrules"
)

func main() {
	root := flag.String("root", "..", "the repository's root (go generate runs in agent/)")
	flag.Parse()
	if err := run(*root); err != nil {
		fmt.Fprintln(os.Stderr, "rulesgen:", err)
		os.Exit(1)
	}
}

func run(root string) error {
	rules := filepath.Join(root, promrules.RulesPath)
	if err := os.WriteFile(rules, promrules.Rules(), 0o644); err != nil {
		return err
	}
	docPath := filepath.Join(root, promrules.DocPath)
	doc, err := os.ReadFile(docPath)
	if err != nil {
		return err
	}
	out, err := promrules.Doc(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(docPath, out, 0o644)
}
