// Command slowproxy is a reverse proxy that holds requests to one path for a
// fixed time before passing them on: the "slow token endpoint" fault of the
// blackbox_exporter comparison (bench/blackbox/run.sh). It listens on
// loopback only and exits by itself after -lifetime.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	target := flag.String("target", "", "base URL of the server behind the proxy, e.g. http://127.0.0.1:4444")
	path := flag.String("path", "/oauth2/token", "requests to this path are delayed; empty delays every request")
	delay := flag.Duration("delay", 500*time.Millisecond, "how long a matching request is held before it is forwarded")
	lifetime := flag.Duration("lifetime", 10*time.Minute, "exit after this long, so a forgotten proxy does not linger")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, *target, *path, *delay, *lifetime, logger); err != nil {
		logger.Error("slowproxy stopped", "err", err)
		os.Exit(1)
	}
}

func run(listen, target, path string, delay, lifetime time.Duration, logger *slog.Logger) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target %q is not an absolute URL", target)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %s: only loopback addresses are allowed", listen)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if path == "" || r.URL.Path == path {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, lifetime)
	defer cancel()

	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("slowproxy listening", "addr", l.Addr().String(), "target", target, "path", path, "delay", delay)
	go func() {
		<-ctx.Done()
		shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
