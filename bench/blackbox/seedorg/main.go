// Command seedorg serves one simulated Salesforce org (internal/orgsim) with
// the introspection permission gap: a password-grant user and a connected
// app without "Introspect All Tokens", whose session ids introspect as
// {"active": false} although they work. It is the fourth fault of the
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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	clientID := flag.String("client-id", "seed-app", "the connected app's consumer key")
	username := flag.String("username", "integration@seed.example", "the password-grant user")
	lifetime := flag.Duration("lifetime", 10*time.Minute, "exit after this long, so a forgotten server does not linger")
	flag.Parse()
	// Secrets come from the environment, not the command line, which other users can read.
	secret, password := os.Getenv("SEEDORG_CLIENT_SECRET"), os.Getenv("SEEDORG_PASSWORD")
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if secret == "" || password == "" {
		logger.Error("set SEEDORG_CLIENT_SECRET and SEEDORG_PASSWORD")
		os.Exit(2)
	}
	if err := run(*listen, *clientID, secret, *username, password, *lifetime, logger); err != nil {
		logger.Error("seedorg stopped", "err", err)
		os.Exit(1)
	}
}

func run(listen, clientID, secret, username, password string, lifetime time.Duration, logger *slog.Logger) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %s: only loopback addresses are allowed", listen)
	}
	org := orgsim.New(orgsim.Options{OrgID: "00D5e000000SEEDEAA"})
	org.AddUser(orgsim.User{Username: username, Password: password})
	// No IntrospectAll: the app may not introspect session ids (the permission gap).
	org.AddApp(orgsim.App{ClientID: clientID, ClientSecret: secret})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, lifetime)
	defer cancel()

	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: org.Handler(), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("seedorg listening", "url", "http://"+l.Addr().String())
	go func() {
		<-ctx.Done()
		shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Shutdown(shutdown)
		org.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
