// Package browser tests the status page as people see it: headless Chromium
// (Debian's chromium package, installed by scripts/test.sh) loads the page of
// `tokenwatch demo`, and the test reads the rendered document and looks at
// the screenshot.
//
// TOKENWATCH_SCREENSHOT_DIR=docs keeps the desktop screenshot as
// docs/status-page.png, the one the README shows.
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/tokenwatch/tokenwatch/internal/e2etest"
)

const (
	seedOrg  = "seed-password-grant"
	demoOrgs = 7
	// seedFix is the heart of the seed case's fix: the setting to change.
	seedFix = `Enable "Introspect All Tokens" on the connected app`
)

// chromiumFlags run Chromium headless without touching the network or a
// profile of its own beyond the fresh one each run gets.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
	"--disable-component-update", "--disable-sync", "--no-first-run",
}

// startDemo builds tokenwatch, runs `tokenwatch demo` and waits until every
// simulated org has been checked once. It returns the page's URL.
func startDemo(t *testing.T) string {
	t.Helper()
	bin := e2etest.Tokenwatch(t)
	addr := e2etest.FreeAddr(t)

	logs := &e2etest.Buffer{}
	cmd := exec.Command(bin, "demo", "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})

	base := "http://" + addr + "/"
	if !e2etest.Poll(30*time.Second, func() bool { return allChecked(base + "api/v1/orgs") }) {
		t.Fatalf("the demo's orgs were not all checked within 30 s; its output:\n%s", logs)
	}
	return base
}

func allChecked(api string) bool {
	resp, err := http.Get(api)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var list struct {
		Orgs []struct {
			State string `json:"state"`
		} `json:"orgs"`
	}
	if json.NewDecoder(resp.Body).Decode(&list) != nil || len(list.Orgs) != demoOrgs {
		return false
	}
	for _, o := range list.Orgs {
		if o.State == "pending" {
			return false
		}
	}
	return true
}

// chromium runs headless Chromium with a fresh profile and returns its
// standard output.
func chromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+profile), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// byID finds the element with the id.
func byID(n *html.Node, id string) *html.Node {
	if n.Type == html.ElementNode {
		for _, a := range n.Attr {
			if a.Key == "id" && a.Val == id {
				return n
			}
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if found := byID(c, id); found != nil {
			return found
		}
	}
	return nil
}

// byClass finds the first element carrying the class.
func byClass(n *html.Node, class string) *html.Node {
	if n.Type == html.ElementNode {
		for _, a := range n.Attr {
			if a.Key == "class" && strings.Contains(" "+a.Val+" ", " "+class+" ") {
				return n
			}
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if found := byClass(c, class); found != nil {
			return found
		}
	}
	return nil
}

// text is what a reader sees of n: its text with white space collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// orgOrder lists the org rows' ids in page order.
func orgOrder(n *html.Node) []string {
	var ids []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			for _, a := range n.Attr {
				if a.Key == "id" && strings.HasPrefix(a.Val, "org-") {
					ids = append(ids, strings.TrimPrefix(a.Val, "org-"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return ids
}

func TestStatusPageInChromium(t *testing.T) {
	bin := e2etest.Tool(t, "chromium", "chromium")
	url := startDemo(t)

	t.Run("the rendered page shows the seed case failing, first, with its fix", func(t *testing.T) {
		dom := chromium(t, bin, "--dump-dom", url)
		doc, err := html.Parse(bytes.NewReader(dom))
		if err != nil {
			t.Fatal(err)
		}
		summary := byClass(doc, "summary")
		if summary == nil || text(summary) != "1 failing, 6 ok" {
			t.Errorf("the summary line reads %q, want %q", text(summary), "1 failing, 6 ok")
		}
		if order := orgOrder(doc); len(order) != demoOrgs || order[0] != seedOrg {
			t.Errorf("org rows %v: want %d, the seed case first", order, demoOrgs)
		}
		row := byID(doc, "org-"+seedOrg)
		if row == nil {
			t.Fatalf("no row for %s in the rendered page:\n%.3000s", seedOrg, dom)
		}
		for _, want := range []string{seedOrg, "FAILING", "introspection_not_permitted"} {
			if !strings.Contains(text(row), want) {
				t.Errorf("the seed case's row %q lacks %q", text(row), want)
			}
		}
		detail := byID(doc, "detail-"+seedOrg)
		if detail == nil {
			t.Fatalf("no explanation under the seed case's row")
		}
		for _, want := range []string{"What happened:", `{"active": false}`, "Fix: " + seedFix, "tokenwatch diagnose --org " + seedOrg} {
			if !strings.Contains(text(detail), want) {
				t.Errorf("the seed case's explanation %q lacks %q", text(detail), want)
			}
		}
	})

	t.Run("a screenshot shows red for the failure and green for the rest", func(t *testing.T) {
		shot := filepath.Join(t.TempDir(), "status.png")
		chromium(t, bin, "--hide-scrollbars", "--screenshot="+shot, "--window-size=1280,900", url)
		raw, err := os.ReadFile(shot)
		if err != nil {
			t.Fatalf("no screenshot: %v", err)
		}
		if !bytes.HasPrefix(raw, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("the screenshot is not a PNG")
		}
		if len(raw) < 20_000 {
			t.Errorf("the screenshot has %d bytes: too small to show the page", len(raw))
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
			t.Errorf("the screenshot is %dx%d, want 1280x900", b.Dx(), b.Dy())
		}
		// The page's red (#c62828) and green (#2e7d32): the summary banner
		// and FAILING badge, the OK badges.
		red, green := share(img, 0xc6, 0x28, 0x28), share(img, 0x2e, 0x7d, 0x32)
		if red < 0.03 {
			t.Errorf("%.1f%% of the screenshot is the failing red: the failure does not stand out", red*100)
		}
		if green < 0.003 {
			t.Errorf("%.2f%% of the screenshot is the healthy green: the OK orgs do not show", green*100)
		}
		if dir := os.Getenv("TOKENWATCH_SCREENSHOT_DIR"); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, "status-page.png"), raw, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("kept the screenshot as %s", filepath.Join(dir, "status-page.png"))
		}
	})
}

// share is the fraction of the image's pixels of about the colour r, g, b.
func share(img image.Image, r, g, b uint8) float64 {
	near := func(a uint32, want uint8) bool {
		d := int(a>>8) - int(want)
		return d > -8 && d < 8
	}
	bounds := img.Bounds()
	n := 0
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr, r) && near(pg, g) && near(pb, b) {
				n++
			}
		}
	}
	return float64(n) / float64(bounds.Dx()*bounds.Dy())
}
