// Package deploy checks the deployment files users copy: the Dockerfiles
// (from source, and of a release), the systemd unit and the Kubernetes
// manifests, and the release configuration (.goreleaser.yaml). None of them can run here (no
// container engine, no cluster, no systemd as init), so the tests check what
// a user would trip over: the image's user, port and entrypoint, the binary
// its build command makes, the unit with systemd-analyze (the one subtest
// that skips without it, and fails without it under CI=true), and that the
// manifests' ports, probes, mounts, shards and labels fit together and fit
// tokenwatch's configuration.
package deploy

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

const (
	port = "9851"
	// stateDir is where every deployment keeps tokenwatch's durable state
	// (--storage.path): the default, data/ under the working directory, is
	// read-only or throwaway in all of them.
	stateDir = "/var/lib/tokenwatch"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
}

func parseDockerfile(t *testing.T, name string) []instruction {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

func find(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// goVersion is the go directive of go.mod: the builder image must have it or
// a later patch release of it (which fixes the standard library's
// vulnerabilities that scripts/test.sh lets pass on an older local Go).
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// builderHasGo tells whether the image golang:VERSION-VARIANT has the Go
// release want (1.26.8) or a later patch of it (1.26.10).
func builderHasGo(image, want string) bool {
	m := regexp.MustCompile(`^golang:(\d+)\.(\d+)\.(\d+)-\S+$`).FindStringSubmatch(image)
	w := regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`).FindStringSubmatch(want)
	if m == nil || w == nil || m[1] != w[1] || m[2] != w[2] {
		return false
	}
	have, _ := strconv.Atoi(m[3])
	need, _ := strconv.Atoi(w[3])
	return have >= need
}

var buildRun = regexp.MustCompile(`CGO_ENABLED=0 go build (.*) -o (\S+) (\./cmd/tokenwatch)$`)

func TestDockerfile(t *testing.T) {
	st := stages(parseDockerfile(t, "Dockerfile"))
	if len(st) < 2 {
		t.Fatalf("%d stage(s), want a build stage and a small final one", len(st))
	}
	builder, final := st[0], st[len(st)-1]
	from := find(builder, "FROM")[0]
	fields := strings.Fields(from)

	var entry []string
	if e := find(final, "ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0]), &entry) != nil || len(entry) == 0 {
		t.Fatalf("the final stage needs one ENTRYPOINT in exec form, has %q", e)
	}
	copies := find(final, "COPY")
	var run []string
	for _, r := range find(builder, "RUN") {
		if m := buildRun.FindStringSubmatch(r); m != nil {
			run = m
		}
	}

	tests := []struct {
		name string
		ok   bool
		got  any
	}{
		{"the builder has go.mod's Go or a later patch of it", len(fields) == 3 && builderHasGo(fields[0], goVersion(t)) && strings.EqualFold(fields[1], "AS"), from},
		{"the final image is distroless or scratch", regexp.MustCompile(`^(gcr\.io/distroless/static\S*|scratch)$`).MatchString(find(final, "FROM")[0]), find(final, "FROM")},
		{"it runs as a non-root user", nonRoot(find(final, "USER")), find(final, "USER")},
		{"it exposes " + port, slices.Contains(find(final, "EXPOSE"), port), find(final, "EXPOSE")},
		{"it runs the daemon by default", slices.Contains(find(final, "CMD"), `["run", "--config.file=/etc/tokenwatch/tokenwatch.yml", "--web.listen-address=:`+port+`", "--storage.path=`+stateDir+`"]`), find(final, "CMD")},
		{"the state directory is a volume", slices.ContainsFunc(find(final, "VOLUME"), func(v string) bool { return slices.Contains(volumePaths(v), stateDir) }), find(final, "VOLUME")},
		{"a static build of the command", run != nil, find(builder, "RUN")},
		{"the entrypoint is the binary copied from the build", run != nil && slices.Contains(copies, "--from="+fields[len(fields)-1]+" "+run[2]+" "+entry[0]), copies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Errorf("not so: %q", tt.got)
			}
		})
	}
	// distroless has no shell: the state directory is made in the build stage
	// and copied, owned by the user the image runs as and closed to others.
	t.Run("the state directory belongs to the user, mode 0700", func(t *testing.T) {
		var state *copyInstruction
		for _, c := range copies {
			if ci := parseCopy(c); ci.dest == stateDir || ci.dest == stateDir+"/" {
				state = &ci
			}
		}
		if state == nil {
			t.Fatalf("no COPY makes %s in the final stage: %q", stateDir, copies)
		}
		user := find(final, "USER")
		if len(user) == 0 || state.opts["chown"] == "" || state.opts["chown"] != user[len(user)-1] {
			t.Errorf("%s is owned by %q, the image runs as %q: tokenwatch could not write its state", stateDir, state.opts["chown"], user)
		}
		if mode, err := strconv.ParseUint(state.opts["chmod"], 8, 32); err != nil || mode&0o077 != 0 || mode&0o700 != 0o700 {
			t.Errorf("%s gets --chmod=%q, want 0700: rotated refresh tokens live there", stateDir, state.opts["chmod"])
		}
		if state.opts["from"] != fields[len(fields)-1] || len(state.src) != 1 {
			t.Fatalf("%s is copied from %q %q, want one directory of the build stage %s", stateDir, state.opts["from"], state.src, fields[len(fields)-1])
		}
		made := regexp.MustCompile(`\bmkdir\b.*\s` + regexp.QuoteMeta(strings.TrimSuffix(state.src[0], "/")) + `/?(\s|$)`)
		if !slices.ContainsFunc(find(builder, "RUN"), made.MatchString) {
			t.Errorf("the build stage does not make %s, which the final stage copies", state.src[0])
		}
	})
	if run == nil {
		return
	}

	t.Run("the build command makes a static binary that knows its version", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "tokenwatch")
		args := map[string]string{"VERSION": "9.8.7-image", "REVISION": "0123abcd", "BRANCH": "release-9.8", "BUILD_DATE": "2026-11-30T17:00:00Z"}
		flags := run[1]
		for arg, value := range args {
			flags = strings.ReplaceAll(flags, "${"+arg+"}", value)
		}
		cmd := exec.Command("sh", "-c", "go build "+flags+" -o "+bin+" "+run[3])
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		for arg, value := range args {
			if err != nil || !strings.Contains(string(out), value) {
				t.Errorf("tokenwatch version says %q (%v), want the %s the image was built with, %s", out, err, arg, value)
			}
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the binary is dynamically linked: it cannot start on distroless/static or scratch")
			}
		}
	})
}

// volumePaths reads a VOLUME instruction, JSON or plain form.
func volumePaths(args string) []string {
	var paths []string
	if json.Unmarshal([]byte(args), &paths) == nil {
		return paths
	}
	return strings.Fields(args)
}

// copyInstruction is a COPY's options (--from, --chown, --chmod, without
// the dashes), sources and destination.
type copyInstruction struct {
	opts map[string]string
	src  []string
	dest string
}

func parseCopy(args string) copyInstruction {
	c := copyInstruction{opts: map[string]string{}}
	var paths []string
	for _, f := range strings.Fields(args) {
		if k, v, ok := strings.Cut(strings.TrimPrefix(f, "--"), "="); ok && strings.HasPrefix(f, "--") && len(paths) == 0 {
			c.opts[k] = v
			continue
		}
		paths = append(paths, f)
	}
	if len(paths) > 0 {
		c.src, c.dest = paths[:len(paths)-1], paths[len(paths)-1]
	}
	return c
}

func nonRoot(users []string) bool {
	if len(users) == 0 {
		return false
	}
	user, _, _ := strings.Cut(users[len(users)-1], ":")
	return user != "" && user != "root" && user != "0"
}

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, r io.Reader) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: %q is neither a section nor key=value", n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("systemd/tokenwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, bytes.NewReader(raw))
	svc := u["Service"]
	first := func(k string) string {
		if v := svc[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	tests := []struct {
		key, want string
	}{
		{"ExecStart", "/usr/local/bin/tokenwatch run --config.file=/etc/tokenwatch/tokenwatch.yml --web.listen-address=:" + port + " --storage.path=" + stateDir},
		{"StateDirectory", strings.TrimPrefix(stateDir, "/var/lib/")},
		{"StateDirectoryMode", "0700"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"DynamicUser", "yes"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"CapabilityBoundingSet", ""},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"Restart", "on-failure"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if _, set := svc[tt.key]; !set || first(tt.key) != tt.want {
				t.Errorf("%s=%q, want %q", tt.key, first(tt.key), tt.want)
			}
		})
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("WantedBy=%q: the unit would not start at boot", got)
	}
	// ProtectSystem=strict makes everything read-only but the state,
	// runtime, cache and logs directories and ReadWritePaths.
	t.Run("the storage path is writable", func(t *testing.T) {
		path, ok := flagValue(strings.Fields(first("ExecStart")), "storage.path")
		if !ok {
			t.Fatal("ExecStart has no --storage.path: the default data/ under / is read-only")
		}
		writable := []string{}
		for _, d := range strings.Fields(strings.Join(svc["StateDirectory"], " ")) {
			writable = append(writable, "/var/lib/"+d)
		}
		writable = append(writable, strings.Fields(strings.Join(svc["ReadWritePaths"], " "))...)
		if !slices.Contains(writable, strings.TrimSuffix(path, "/")) {
			t.Errorf("--storage.path=%s is none of the writable %q", path, writable)
		}
	})

	// Without systemd-analyze only these skip (or fail under CI=true).
	t.Run("systemd-analyze", func(t *testing.T) {
		analyze := e2etest.Tool(t, "systemd-analyze", "systemd")
		// verify insists that ExecStart's program exists: point it at a build.
		dir := t.TempDir()
		path := filepath.Join(dir, "tokenwatch.service")
		body := strings.ReplaceAll(string(raw), "/usr/local/bin/tokenwatch", e2etest.Tokenwatch(t))
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Run("verify", func(t *testing.T) {
			// It exits 0 on unknown keys and bad values too, so any word it says fails.
			out, err := exec.Command(analyze, "verify", path).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		})
		t.Run("security rates it OK", func(t *testing.T) {
			// Exposure 0 (locked down) to 10 (unprotected), given times ten;
			// up to 2.0 systemd calls OK.
			out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze security: %v\n%s", err, out)
			}
		})
	})
}

// object is one Kubernetes manifest, decoded loosely.
type object = map[string]any

// dig walks maps and lists: dig(o, "spec", "ports", 0, "port").
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := dig(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := dig(v, path...).([]any)
	return l
}

// manifests decodes every document of every YAML file in kubernetes/ by kind.
func manifests(t *testing.T) (byKind map[string][]object, files []string) {
	t.Helper()
	paths, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	byKind = map[string][]object{}
	for _, path := range paths {
		files = append(files, filepath.Base(path))
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for n := 0; ; n++ {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", path, n, err)
			}
			if o == nil {
				continue
			}
			if str(o, "apiVersion") == "" || str(o, "kind") == "" || (str(o, "kind") != "Kustomization" && str(o, "metadata", "name") == "") {
				t.Errorf("%s document %d lacks apiVersion, kind or metadata.name", path, n)
			}
			byKind[str(o, "kind")] = append(byKind[str(o, "kind")], o)
		}
	}
	return byKind, files
}

func one(t *testing.T, byKind map[string][]object, kind string) object {
	t.Helper()
	if len(byKind[kind]) != 1 {
		t.Fatalf("%d %s manifests, want 1", len(byKind[kind]), kind)
	}
	return byKind[kind][0]
}

func TestKubernetesManifests(t *testing.T) {
	byKind, files := manifests(t)
	kust := one(t, byKind, "Kustomization")
	sts := one(t, byKind, "StatefulSet")
	svc := one(t, byKind, "Service")
	sm := one(t, byKind, "ServiceMonitor")
	cm := one(t, byKind, "ConfigMap")
	secret := one(t, byKind, "Secret")
	pod := dig(sts, "spec", "template", "spec")
	podLabels, _ := dig(sts, "spec", "template", "metadata", "labels").(map[string]any)
	container := dig(pod, "containers", 0)
	var args []string
	for _, a := range list(container, "args") {
		args = append(args, a.(string))
	}
	flag := func(name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		return ""
	}
	mountOf := func(volumeKind, key, name string) string {
		for _, v := range list(pod, "volumes") {
			if str(v, volumeKind, key) != name {
				continue
			}
			for _, m := range list(container, "volumeMounts") {
				if str(m, "name") == str(v, "name") {
					return str(m, "mountPath")
				}
			}
		}
		return ""
	}

	t.Run("kustomization lists every manifest", func(t *testing.T) {
		var want []string
		for _, f := range files {
			if f != "kustomization.yaml" {
				want = append(want, f)
			}
		}
		var got []string
		for _, r := range list(kust, "resources") {
			got = append(got, r.(string))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("resources %q, want %q", got, want)
		}
	})

	t.Run("ports", func(t *testing.T) {
		portName := str(container, "ports", 0, "name")
		if p, _ := dig(container, "ports", 0, "containerPort").(int); p != 9851 || flag("web.listen-address") != ":"+port {
			t.Errorf("container listens on %s and exposes %v, want :%s for both", flag("web.listen-address"), p, port)
		}
		if p, _ := dig(svc, "spec", "ports", 0, "port").(int); p != 9851 || str(svc, "spec", "ports", 0, "targetPort") != portName {
			t.Errorf("the Service forwards %v to %q, want 9851 to the container's %q", p, str(svc, "spec", "ports", 0, "targetPort"), portName)
		}
		if str(sm, "spec", "endpoints", 0, "port") != str(svc, "spec", "ports", 0, "name") || str(sm, "spec", "endpoints", 0, "path") != "/metrics" {
			t.Errorf("the ServiceMonitor scrapes %q %q, want the Service's port name and /metrics",
				str(sm, "spec", "endpoints", 0, "port"), str(sm, "spec", "endpoints", 0, "path"))
		}
	})

	t.Run("probes", func(t *testing.T) {
		for probe, path := range map[string]string{"livenessProbe": "/-/healthy", "readinessProbe": "/-/ready"} {
			if str(container, probe, "httpGet", "path") != path || str(container, probe, "httpGet", "port") != str(container, "ports", 0, "name") {
				t.Errorf("%s asks %q on port %q, want %s on the metrics port", probe,
					str(container, probe, "httpGet", "path"), str(container, probe, "httpGet", "port"), path)
			}
		}
	})

	t.Run("selectors find the pods", func(t *testing.T) {
		matches := func(sel any) bool {
			m, ok := sel.(map[string]any)
			if !ok || len(m) == 0 {
				return false
			}
			for k, v := range m {
				if podLabels[k] != v {
					return false
				}
			}
			return true
		}
		if !matches(dig(sts, "spec", "selector", "matchLabels")) {
			t.Error("the StatefulSet's selector does not match its pods")
		}
		if !matches(dig(svc, "spec", "selector")) {
			t.Error("the Service's selector does not match the pods")
		}
		if str(sts, "spec", "serviceName") != str(svc, "metadata", "name") || str(svc, "spec", "clusterIP") != "None" {
			t.Error("the StatefulSet's serviceName must name the headless Service")
		}
		svcLabels, _ := dig(svc, "metadata", "labels").(map[string]any)
		for k, v := range dig(sm, "spec", "selector", "matchLabels").(map[string]any) {
			if svcLabels[k] != v {
				t.Errorf("the ServiceMonitor selects %s=%v, which the Service lacks", k, v)
			}
		}
	})

	t.Run("one shard per replica", func(t *testing.T) {
		replicas, _ := dig(sts, "spec", "replicas").(int)
		m := regexp.MustCompile(`^\$\((\w+)\)/(\d+)$`).FindStringSubmatch(flag("shard"))
		if m == nil {
			t.Fatalf("--shard=%q, want $(VAR)/N", flag("shard"))
		}
		if m[2] != strconv.Itoa(replicas) {
			t.Errorf("--shard=%s with %d replicas: orgs of the missing shards would never be checked", flag("shard"), replicas)
		}
		var from string
		for _, e := range list(container, "env") {
			if str(e, "name") == m[1] {
				from = str(e, "valueFrom", "fieldRef", "fieldPath")
			}
		}
		if from != "metadata.labels['apps.kubernetes.io/pod-index']" {
			t.Errorf("$(%s) comes from %q, want the pod's ordinal", m[1], from)
		}
	})

	t.Run("runs as non-root, read-only", func(t *testing.T) {
		if dig(pod, "securityContext", "runAsNonRoot") != true {
			t.Error("runAsNonRoot is not set")
		}
		if uid, _ := dig(pod, "securityContext", "runAsUser").(int); uid == 0 {
			t.Error("runAsUser is root or unset")
		}
		sc := dig(container, "securityContext")
		if dig(sc, "allowPrivilegeEscalation") != false || dig(sc, "readOnlyRootFilesystem") != true ||
			!slices.Equal(list(sc, "capabilities", "drop"), []any{"ALL"}) {
			t.Errorf("container securityContext %v: want no privilege escalation, a read-only root, no capabilities", sc)
		}
	})

	// The root file system is read-only: the state needs a volume of its
	// own per replica, which outlives the pod and which its user can write.
	t.Run("each replica keeps its state on its own volume", func(t *testing.T) {
		path := flag("storage.path")
		if path == "" {
			t.Fatal("no --storage.path: the default data/ is on the read-only root file system")
		}
		var claim any
		for _, c := range list(sts, "spec", "volumeClaimTemplates") {
			for _, m := range list(container, "volumeMounts") {
				if str(m, "name") == str(c, "metadata", "name") && str(m, "mountPath") == strings.TrimSuffix(path, "/") {
					claim = c
					if dig(m, "readOnly") == true {
						t.Errorf("the state volume is mounted read-only")
					}
				}
			}
		}
		if claim == nil {
			t.Fatalf("--storage.path=%s is not the mount of a volumeClaimTemplate: the state would not survive the pod", path)
		}
		if !slices.Equal(list(claim, "spec", "accessModes"), []any{"ReadWriteOnce"}) {
			t.Errorf("accessModes %v, want [ReadWriteOnce]: one replica per store", list(claim, "spec", "accessModes"))
		}
		if str(claim, "spec", "resources", "requests", "storage") == "" {
			t.Error("the claim requests no storage size")
		}
		// A fresh volume belongs to root; fsGroup hands it to the user.
		if gid, _ := dig(pod, "securityContext", "fsGroup").(int); gid == 0 {
			t.Error("no fsGroup: the non-root user cannot write the state volume")
		}
	})

	// The configuration in the ConfigMap must load as tokenwatch would load
	// it in the pod: every *_file under the Secret's mount, naming a key.
	t.Run("the configuration loads with the mounted secrets", func(t *testing.T) {
		cfgDir := mountOf("configMap", "name", str(cm, "metadata", "name"))
		file := flag("config.file")
		if cfgDir == "" || filepath.Dir(file) != cfgDir {
			t.Fatalf("--config.file=%s is not in the ConfigMap's mount %q", file, cfgDir)
		}
		body := str(cm, "data", filepath.Base(file))
		if body == "" {
			t.Fatalf("the ConfigMap has no key %s", filepath.Base(file))
		}
		secretDir := mountOf("secret", "secretName", str(secret, "metadata", "name"))
		if secretDir == "" {
			t.Fatal("the Secret is not mounted")
		}
		for _, v := range list(pod, "volumes") {
			if str(v, "secret", "secretName") != str(secret, "metadata", "name") {
				continue
			}
			// Unset, Kubernetes makes them 0644: readable by every user.
			if mode, ok := dig(v, "secret", "defaultMode").(int); !ok || mode&0o007 != 0 {
				t.Errorf("secret files have mode %o: readable by every user", mode)
			}
		}
		refs := regexp.MustCompile(`(?m)^\s*\w+_file:\s*(\S+)`).FindAllStringSubmatch(body, -1)
		if len(refs) == 0 {
			t.Fatal("the example configuration reads no secret from a file")
		}
		local := t.TempDir()
		data, _ := dig(secret, "stringData").(map[string]any)
		for _, r := range refs {
			dir, key := filepath.Dir(r[1]), filepath.Base(r[1])
			if dir != secretDir {
				t.Errorf("%s is not under the Secret's mount %s", r[1], secretDir)
				continue
			}
			v, ok := data[key].(string)
			if !ok {
				t.Errorf("%s names key %q, which the Secret lacks", r[1], key)
				continue
			}
			if err := os.WriteFile(filepath.Join(local, key), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg, err := configs.Parse([]byte(strings.ReplaceAll(body, secretDir+"/", "")), local, nil)
		if err != nil {
			t.Fatalf("tokenwatch refuses the ConfigMap's configuration:\n%v", err)
		}
		if len(cfg.Orgs) == 0 {
			t.Error("the configuration has no orgs")
		}
	})

	// configs/prometheus/prometheus.yml keeps pods by label and port name.
	t.Run("the example Prometheus job finds these pods", func(t *testing.T) {
		raw, err := os.ReadFile("../configs/prometheus/prometheus.yml")
		if err != nil {
			t.Fatal(err)
		}
		var prom object
		if err := yaml.Unmarshal(raw, &prom); err != nil {
			t.Fatal(err)
		}
		values := map[string]string{
			"__meta_kubernetes_pod_label_app_kubernetes_io_name": str(podLabels, "app.kubernetes.io/name"),
			"__meta_kubernetes_pod_container_port_name":          str(container, "ports", 0, "name"),
		}
		checked := 0
		for _, job := range list(prom, "scrape_configs") {
			if dig(job, "kubernetes_sd_configs") == nil {
				continue
			}
			if ns := list(job, "kubernetes_sd_configs", 0, "namespaces", "names"); len(ns) > 0 && !slices.Contains(ns, any(str(kust, "namespace"))) {
				t.Errorf("job %s looks in namespaces %v, the manifests go to %q", str(job, "job_name"), ns, str(kust, "namespace"))
			}
			for _, rule := range list(job, "relabel_configs") {
				if str(rule, "action") != "keep" {
					continue
				}
				source := list(rule, "source_labels")
				if len(source) != 1 {
					continue
				}
				v, known := values[source[0].(string)]
				if !known {
					t.Errorf("job %s keeps by %v, which this test does not know", str(job, "job_name"), source)
					continue
				}
				if !regexp.MustCompile("^(?:" + str(rule, "regex") + ")$").MatchString(v) {
					t.Errorf("job %s keeps %v =~ %q, but the pods have %q", str(job, "job_name"), source, str(rule, "regex"), v)
				}
				checked++
			}
		}
		if checked == 0 {
			t.Error("no Kubernetes job with keep rules in the example")
		}
	})
}

// flagValue finds --name=value among args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestDeploymentsPassOnlyKnownFlags runs `tokenwatch run --help` and looks
// up every flag the image, the unit and the StatefulSet pass: a flag the
// daemon does not know stops it at start.
func TestDeploymentsPassOnlyKnownFlags(t *testing.T) {
	out, err := exec.Command(e2etest.Tokenwatch(t), "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("tokenwatch run --help: %v\n%s", err, out)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--(?:\[no-\])?([a-z][\w.-]*)`).FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	if !known["config.file"] {
		t.Fatalf("cannot read the flags from:\n%s", out)
	}

	var image []string
	st := stages(parseDockerfile(t, "Dockerfile"))
	for _, cmd := range find(st[len(st)-1], "CMD") {
		if err := json.Unmarshal([]byte(cmd), &image); err != nil {
			t.Fatalf("CMD %s is not in exec form: %v", cmd, err)
		}
	}
	raw, err := os.ReadFile("systemd/tokenwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	execStart := parseUnit(t, bytes.NewReader(raw))["Service"]["ExecStart"]
	if len(execStart) == 0 {
		t.Fatal("the unit has no ExecStart")
	}
	byKind, _ := manifests(t)
	var pod []string
	for _, a := range list(one(t, byKind, "StatefulSet"), "spec", "template", "spec", "containers", 0, "args") {
		pod = append(pod, a.(string))
	}

	for name, args := range map[string][]string{
		"Dockerfile CMD":    image,
		"systemd ExecStart": strings.Fields(execStart[len(execStart)-1])[1:],
		"StatefulSet args":  pod,
	} {
		t.Run(name, func(t *testing.T) {
			if len(args) == 0 || args[0] != "run" {
				t.Errorf("%q does not start with the run command", args)
			}
			for _, a := range args {
				flagName, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if strings.HasPrefix(a, "--") && !known[flagName] {
					t.Errorf("tokenwatch run does not know --%s", flagName)
				}
			}
			if v, ok := flagValue(args, "storage.path"); !ok || strings.TrimSuffix(v, "/") != stateDir {
				t.Errorf("--storage.path=%q, want %s", v, stateDir)
			}
		})
	}
}

// TestReleaseImageIsTheImage holds deploy/Dockerfile.release, the image
// goreleaser makes from the binaries it built, to deploy/Dockerfile's final
// stage: the same base, user, state directory, port, entrypoint and command,
// only the binary comes from the build context (one per platform).
func TestReleaseImageIsTheImage(t *testing.T) {
	source := stages(parseDockerfile(t, "Dockerfile"))
	release := stages(parseDockerfile(t, "Dockerfile.release"))
	final, releaseFinal := source[len(source)-1], release[len(release)-1]
	for _, cmd := range []string{"FROM", "USER", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD"} {
		if got, want := find(releaseFinal, cmd), find(final, cmd); !slices.Equal(got, want) {
			t.Errorf("%s: the release image has %q, deploy/Dockerfile %q", cmd, got, want)
		}
	}
	var entry []string
	_ = json.Unmarshal([]byte(find(final, "ENTRYPOINT")[0]), &entry)
	var binary, state *copyInstruction
	for _, c := range find(releaseFinal, "COPY") {
		ci := parseCopy(c)
		switch {
		case len(entry) > 0 && ci.dest == entry[0]:
			binary = &ci
		case strings.TrimSuffix(ci.dest, "/") == stateDir:
			state = &ci
		}
	}
	if binary == nil || len(binary.src) != 1 || binary.src[0] != "$TARGETPLATFORM/tokenwatch" || binary.opts["from"] != "" {
		t.Errorf("the release image must copy goreleaser's binary of its platform ($TARGETPLATFORM/tokenwatch) to %v, copies %+v", entry, binary)
	}
	if !slices.Contains(find(releaseFinal, "ARG"), "TARGETPLATFORM") {
		t.Error("the release image's final stage does not declare ARG TARGETPLATFORM, which its COPY needs")
	}
	if state == nil || state.opts["chown"] != find(final, "USER")[0] || state.opts["chmod"] != "0700" || len(state.src) != 1 {
		t.Fatalf("the release image's %s is not made as deploy/Dockerfile's (owned by its user, mode 0700): %+v", stateDir, state)
	}
	// The directory it copies is made in the stage it names.
	made := regexp.MustCompile(`\bmkdir\b.*\s` + regexp.QuoteMeta(strings.TrimSuffix(state.src[0], "/")) + `/?(\s|$)`)
	for _, st := range release[:len(release)-1] {
		if from := strings.Fields(find(st, "FROM")[0]); len(from) == 3 && from[2] == state.opts["from"] &&
			slices.ContainsFunc(find(st, "RUN"), made.MatchString) {
			return
		}
	}
	t.Errorf("no stage %q of the release image makes %s, which its final stage copies", state.opts["from"], state.src[0])
}

// platform is an os and architecture of goreleaser's builds.
type platform struct {
	Goos   string `yaml:"goos"`
	Goarch string `yaml:"goarch"`
}

// goreleaser is the part of .goreleaser.yaml these tests read.
type goreleaser struct {
	Version int `yaml:"version"`
	Builds  []struct {
		ID      string     `yaml:"id"`
		Main    string     `yaml:"main"`
		Env     []string   `yaml:"env"`
		Flags   []string   `yaml:"flags"`
		Ldflags []string   `yaml:"ldflags"`
		Goos    []string   `yaml:"goos"`
		Goarch  []string   `yaml:"goarch"`
		Ignore  []platform `yaml:"ignore"`
	} `yaml:"builds"`
	Archives []struct {
		Files []string `yaml:"files"`
	} `yaml:"archives"`
	DockersV2 []struct {
		Dockerfile string   `yaml:"dockerfile"`
		Platforms  []string `yaml:"platforms"`
	} `yaml:"dockers_v2"`
}

// TestReleaseConfig checks .goreleaser.yaml against what the issue of
// releases asks and what the other deployments do: static binaries for
// Linux and macOS that know their version, revision, branch and
// build date (the variables deploy/Dockerfile sets), archives with the
// systemd unit and example configurations, and the release image.
func TestReleaseConfig(t *testing.T) {
	raw, err := os.ReadFile("../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var g goreleaser
	if err := yaml.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if g.Version != 2 || len(g.Builds) != 1 || len(g.Archives) != 1 || len(g.DockersV2) != 1 {
		t.Fatalf("want a goreleaser v2 configuration with one build, one archive and one image, have %+v", g)
	}
	b := g.Builds[0]
	if b.Main != "./cmd/tokenwatch" || !slices.Contains(b.Env, "CGO_ENABLED=0") || !slices.Contains(b.Flags, "-trimpath") {
		t.Errorf("the build is not a static, trimmed build of ./cmd/tokenwatch: %+v", b)
	}
	var targets []string
	for _, goos := range b.Goos {
		for _, goarch := range b.Goarch {
			if !slices.Contains(b.Ignore, platform{goos, goarch}) {
				targets = append(targets, goos+"/"+goarch)
			}
		}
	}
	// Windows is left out until internal/store can lock its directory there.
	for _, want := range []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"} {
		if !slices.Contains(targets, want) {
			t.Errorf("no release for %s (builds %v)", want, targets)
		}
	}
	ldflags := strings.Join(b.Ldflags, " ")
	image := strings.Join(find(stages(parseDockerfile(t, "Dockerfile"))[0], "RUN"), " ")
	for _, v := range []string{"Version", "Revision", "Branch", "BuildUser", "BuildDate"} {
		x := "-X github.com/prometheus/common/version." + v + "="
		if !strings.Contains(ldflags, x) {
			t.Errorf("the release does not set %s", x)
		}
		if !strings.Contains(image, x) {
			t.Errorf("deploy/Dockerfile does not set %s", x)
		}
	}
	files := strings.Join(g.Archives[0].Files, " ")
	for _, want := range []string{"deploy/systemd/tokenwatch.service", "configs/examples", "README.md"} {
		if !strings.Contains(files, want) {
			t.Errorf("the archives do not hold %s: %v", want, g.Archives[0].Files)
		}
	}
	if d := g.DockersV2[0]; d.Dockerfile != "deploy/Dockerfile.release" || !slices.Contains(d.Platforms, "linux/amd64") || !slices.Contains(d.Platforms, "linux/arm64") {
		t.Errorf("the release image is not deploy/Dockerfile.release for linux/amd64 and linux/arm64: %+v", d)
	}
}
