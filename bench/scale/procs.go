package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the benchmark started; all are stopped at exit.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

var (
	procsMu sync.Mutex
	procs   = map[*proc]struct{}{}
)

func startProc(name, logPath string, stdout io.Writer, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = lf
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = lf
	}
	// Its own process group: a Ctrl-C in the terminal reaches the
	// benchmark, which stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	procsMu.Lock()
	procs[p] = struct{}{}
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) {
	procsMu.Lock()
	delete(procs, p)
	procsMu.Unlock()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stopAll stops every child still running (at exit, on a signal or the time limit).
func stopAll() {
	procsMu.Lock()
	ps := make([]*proc, 0, len(procs))
	for p := range procs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	for _, p := range ps {
		p.stop(10 * time.Second)
	}
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildBinaries builds tokenwatch and fakeoauth. tokenwatch comes from the
// working tree, whatever its state, or, with rev, from that commit
// (exported with git archive into dir; the working tree is not touched).
func buildBinaries(repo, rev, dir string) (tokenwatch, fake string, err error) {
	tokenwatch = filepath.Join(dir, "tokenwatch")
	fake = filepath.Join(dir, "fakeoauth")
	src := repo
	if rev != "" {
		src = filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", "", err
		}
		cmd := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repo, rev, src)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("git archive %s: %w\n%s", rev, err, out)
		}
	}
	for _, b := range []struct{ out, pkg, dir string }{{tokenwatch, "./cmd/tokenwatch", src}, {fake, "./bench/scale/fakeoauth", repo}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return tokenwatch, fake, nil
}

// fakeServer is a running fakeoauth.
type fakeServer struct {
	*proc
	url string
}

func startFake(bin, dir string, latency time.Duration) (*fakeServer, error) {
	pr, pw := io.Pipe()
	p, err := startProc("fakeoauth", filepath.Join(dir, "fakeoauth.log"), pw, bin,
		"-listen", "127.0.0.1:0", "-secret", benchSecret, "-latency", latency.String())
	if err != nil {
		return nil, err
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() { <-p.done; pw.Close() }()
	select {
	case u, ok := <-lines:
		if !ok || !strings.HasPrefix(u, "http://127.0.0.1:") {
			p.stop(time.Second)
			return nil, fmt.Errorf("fakeoauth did not start: %q %s", u, tail(p.log, 5))
		}
		return &fakeServer{proc: p, url: u}, nil
	case <-time.After(10 * time.Second):
		p.stop(time.Second)
		return nil, errors.New("fakeoauth did not print its address in 10s")
	}
}

// count reads fakeoauth's finished-check counter.
func (f *fakeServer) count(ctx context.Context, c *http.Client) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/count", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	var t float64
	_, err = fmt.Fscan(resp.Body, &n, &t)
	return n, err
}

func (f *fakeServer) stats(ctx context.Context, c *http.Client, since float64) (ServerStats, error) {
	var st ServerStats
	u := f.url + "/stats"
	if since > 0 {
		u += fmt.Sprintf("?since=%.3f", since)
	}
	err := getJSON(ctx, c, u, &st)
	return st, err
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
