// Command gen writes the tokenwatch Grafana dashboard, built in Go with the
// grafana-foundation-sdk, as the JSON file that users import or provision.
//
// Regenerate the committed file after changing the dashboard:
//
//	go generate ./grafana/gen
//
//go:generate go run . -o ../dashboards/tokenwatch.json
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	out := flag.String("o", "grafana/dashboards/tokenwatch.json", "file to write the dashboard JSON to; - for standard output")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}

func write(path string) error {
	body, err := Render()
	if err != nil {
		return err
	}
	if path == "-" {
		_, err = os.Stdout.Write(body)
		return err
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return fmt.Errorf("write the dashboard: %w", err)
	}
	return nil
}
