package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenwatch/tokenwatch/configs"
)

// readObject decodes one manifest of kubernetes/org-files.
func readObject(t *testing.T, name string) object {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("kubernetes", "org-files", name))
	if err != nil {
		t.Fatal(err)
	}
	var o object
	if err := yaml.Unmarshal(raw, &o); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return o
}

// TestKubernetesOrgFiles checks the org-files component as the pod would
// run it: the sidecar writes each key of the example Secret as a file of
// its folder, tokenwatch sees that folder where org_files looks, and the
// configuration loads with the org of the Secret.
func TestKubernetesOrgFiles(t *testing.T) {
	kust := readObject(t, "kustomization.yaml")
	if str(kust, "kind") != "Component" {
		t.Errorf("kind %q: a Component, so the base can include it without a cycle", str(kust, "kind"))
	}
	base, err := os.ReadFile(filepath.Join("kubernetes", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(base), "#   - org-files") {
		t.Error("the base kustomization does not say how to turn the component on")
	}
	for _, r := range list(kust, "resources") {
		if _, err := os.Stat(filepath.Join("kubernetes", "org-files", r.(string))); err != nil {
			t.Errorf("resource %v: %v", r, err)
		}
	}

	pod := dig(readObject(t, "statefulset-patch.yaml"), "spec", "template", "spec")
	sidecar := dig(pod, "initContainers", 0)
	env := map[string]string{}
	for _, e := range list(sidecar, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	folder := env["FOLDER"]
	if env["RESOURCE"] != "secret" || folder == "" || env["LABEL"] == "" {
		t.Fatalf("sidecar env %v: want secrets by label into a folder", env)
	}
	if str(sidecar, "restartPolicy") != "Always" {
		t.Error("the sidecar is not a native sidecar (restartPolicy: Always): it would block the pod's start")
	}
	mountedIn := func(c any) (string, bool) {
		for _, m := range list(c, "volumeMounts") {
			if str(m, "mountPath") == folder {
				return str(m, "name"), dig(m, "readOnly") == true
			}
		}
		return "", false
	}
	sidecarVolume, _ := mountedIn(sidecar)
	var tokenwatch any
	for _, c := range list(pod, "containers") {
		if str(c, "name") == "tokenwatch" {
			tokenwatch = c
		}
	}
	volume, readOnly := mountedIn(tokenwatch)
	if volume == "" || volume != sidecarVolume || !readOnly {
		t.Errorf("tokenwatch mounts %q (read-only %v) at %s, the sidecar %q: want the same volume, read-only for tokenwatch", volume, readOnly, folder, sidecarVolume)
	}

	secret := readObject(t, "org-globex-prod.yaml")
	label := str(secret, "metadata", "labels", env["LABEL"])
	if want := env["LABEL_VALUE"]; label == "" || (want != "" && label != want) {
		t.Errorf("the example Secret has %s=%q, the sidecar looks for %q", env["LABEL"], label, want)
	}
	cfgBody := str(readObject(t, "configmap-patch.yaml"), "data", "tokenwatch.yml")

	// Lay the pod's files out under a temporary root: the config file and
	// the sidecar's folder with the Secret's keys as files.
	root := t.TempDir()
	localFolder := filepath.Join(root, folder)
	if err := os.MkdirAll(localFolder, 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := dig(secret, "stringData").(map[string]any)
	for key, v := range data {
		if err := os.WriteFile(filepath.Join(localFolder, key), []byte(v.(string)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgBody = strings.ReplaceAll(cfgBody, folder, localFolder)
	if err := os.WriteFile(filepath.Join(root, "tokenwatch.yml"), []byte(cfgBody), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(filepath.Join(root, "tokenwatch.yml"), nil)
	if err != nil {
		t.Fatalf("tokenwatch refuses the configuration with the example Secret's files:\n%v", err)
	}
	var names []string
	for _, o := range cfg.Orgs {
		names = append(names, o.Name)
	}
	if !slices.Equal(names, []string{"globex-prod"}) {
		t.Errorf("orgs %q, want the example Secret's globex-prod", names)
	}
}
