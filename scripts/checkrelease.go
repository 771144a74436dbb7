//go:build ignore

// Command checkrelease checks what `goreleaser release --snapshot` left in a
// dist directory (.goreleaser.yaml), for scripts/test.sh: an archive for each
// platform users run, each holding the binary, the README, the CHANGELOG, the
// systemd unit, example configurations, the Prometheus rules and the
// dashboard under one directory; checksums that match; static Linux
// binaries; and, where this machine can run it, a binary that reports the
// version and revision it was built as.
//
//	go run scripts/checkrelease.go -dist dist -revision $(git rev-parse HEAD)
package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// platforms are the os-arch pairs a release has an archive of (windows-amd64,
// a zip, once tokenwatch builds for Windows: see .goreleaser.yaml).
var platforms = []string{"linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"}

// wanted are the files every archive holds besides the binary, by their
// path under the archive's directory; a path ending in / wants at least
// one file right in that directory.
var wanted = []string{
	"README.md",
	"CHANGELOG.md",
	"deploy/systemd/tokenwatch.service",
	"configs/examples/",
	"configs/prometheus/prometheus.yml",
	"configs/prometheus/tokenwatch-rules.yml",
	"grafana/dashboards/tokenwatch.json",
}

// file is one regular file of an archive.
type file struct {
	mode os.FileMode
	data []byte
}

func main() {
	dist := flag.String("dist", "dist", "goreleaser's dist directory")
	revision := flag.String("revision", "", "the commit the release was built from (git rev-parse HEAD)")
	flag.Parse()
	var problems []string
	fail := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	var meta struct {
		Version string `json:"version"`
	}
	if b, err := os.ReadFile(filepath.Join(*dist, "metadata.json")); err != nil || json.Unmarshal(b, &meta) != nil || meta.Version == "" {
		fmt.Fprintf(os.Stderr, "checkrelease: no version in %s/metadata.json (%v)\n", *dist, err)
		os.Exit(1)
	}
	sums := readSums(filepath.Join(*dist, "sha256sums.txt"), fail)

	for _, p := range platforms {
		dir := "tokenwatch-" + meta.Version + "." + p
		name, bin := dir+".tar.gz", "tokenwatch"
		if strings.HasPrefix(p, "windows-") {
			name, bin = dir+".zip", "tokenwatch.exe"
		}
		raw, err := os.ReadFile(filepath.Join(*dist, name))
		if err != nil {
			fail("%s: %v", name, err)
			continue
		}
		if sum := sha256.Sum256(raw); sums[name] != hex.EncodeToString(sum[:]) {
			fail("%s: sha256sums.txt says %q, the archive's is %x", name, sums[name], sum)
		}
		files, err := unpack(name, raw)
		if err != nil {
			fail("%s: %v", name, err)
			continue
		}
		for n := range files {
			if !strings.HasPrefix(n, dir+"/") {
				fail("%s: %s is not under %s/", name, n, dir)
			}
		}
		exe, ok := files[dir+"/"+bin]
		switch {
		case !ok:
			fail("%s: no %s", name, bin)
		case !strings.HasSuffix(name, ".zip") && exe.mode&0o111 == 0:
			fail("%s: %s is not executable (mode %v)", name, bin, exe.mode)
		}
		for _, w := range wanted {
			found := false
			for n := range files {
				if n == dir+"/"+w || strings.HasSuffix(w, "/") && path.Dir(n) == dir+"/"+strings.TrimSuffix(w, "/") {
					found = true
				}
			}
			if !found {
				fail("%s: no %s", name, w)
			}
		}
		if ok && strings.HasPrefix(p, "linux-") {
			if f, err := elf.NewFile(bytes.NewReader(exe.data)); err != nil {
				fail("%s: %s is not an ELF binary: %v", name, bin, err)
			} else {
				for _, prog := range f.Progs {
					if prog.Type == elf.PT_INTERP {
						fail("%s: %s is dynamically linked", name, bin)
					}
				}
			}
		}
		if ok && p == runtime.GOOS+"-"+runtime.GOARCH {
			checkVersion(exe.data, meta.Version, *revision, fail)
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "checkrelease: %d problem(s) in %s:\n  %s\n", len(problems), *dist, strings.Join(problems, "\n  "))
		os.Exit(1)
	}
	fmt.Printf("release %s: %d archives with the binary, the systemd unit and example configs; checksums match\n", meta.Version, len(platforms))
}

// readSums reads a sha256sum file: name -> hex digest.
func readSums(file string, fail func(string, ...any)) map[string]string {
	sums := map[string]string{}
	f, err := os.Open(file)
	if err != nil {
		fail("%v", err)
		return sums
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sum, name, ok := strings.Cut(sc.Text(), "  "); ok {
			sums[name] = sum
		}
	}
	return sums
}

// unpack returns the regular files of a .tar.gz or .zip archive by path.
func unpack(name string, raw []byte) (map[string]file, error) {
	files := map[string]file{}
	if strings.HasSuffix(name, ".zip") {
		zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			return nil, err
		}
		for _, f := range zr.File {
			if f.FileInfo().IsDir() {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			files[path.Clean(f.Name)] = file{f.Mode(), data}
		}
		return files, nil
	}
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[path.Clean(h.Name)] = file{os.FileMode(h.Mode), data}
	}
}

// checkVersion runs the binary's version command: it must name the
// release's version and, when given, its revision.
func checkVersion(exe []byte, version, revision string, fail func(string, ...any)) {
	dir, err := os.MkdirTemp("", "checkrelease-")
	if err != nil {
		fail("%v", err)
		return
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "tokenwatch")
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		fail("%v", err)
		return
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		fail("tokenwatch version: %v\n%s", err, out)
		return
	}
	if !strings.Contains(string(out), "tokenwatch, version "+version+" ") {
		fail("tokenwatch version does not say version %s:\n%s", version, out)
	}
	if revision != "" && !strings.Contains(string(out), "revision: "+revision+")") {
		fail("tokenwatch version does not say revision %s:\n%s", revision, out)
	}
	if !strings.Contains(string(out), "build date:       20") {
		fail("tokenwatch version has no build date:\n%s", out)
	}
}
