package testrig

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// RunBrowser starts a headless Debian chromium with a fresh user-data-dir and
// returns a chromedp context for its first tab (a 1280x800 viewport), already started,
// so callers may derive timeouts from it. The browser is killed when the test
// ends. The page's uncaught exceptions and console errors are logged to the
// test. A missing chromium fails the test with the command that installs it.
func RunBrowser(tb testing.TB) context.Context {
	tb.Helper()
	bin := Need(tb, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	// The flags these machines need (see DESIGN.md), and nothing else.
	for _, f := range []string{"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
		"disable-background-networking", "disable-component-update", "disable-sync",
		// A test's tabs run in the background of nobody: never throttle their timers.
		"disable-background-timer-throttling", "disable-renderer-backgrounding", "disable-backgrounding-occluded-windows",
		"disable-dev-shm-usage", "no-default-browser-check", "disable-extensions"} {
		opts = append(opts, chromedp.Flag(f, true))
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)

	var mu sync.Mutex
	ended := false
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			tb.Logf(format, args...)
		}
	}
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			logf("browser: uncaught %s", describeException(ev.ExceptionDetails))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var parts []string
				for _, a := range ev.Args {
					if a.Value != nil {
						parts = append(parts, string(a.Value))
					} else {
						parts = append(parts, a.Description)
					}
				}
				logf("browser console.%s: %s", ev.Type, strings.Join(parts, " "))
			}
		}
	}))
	tb.Cleanup(func() {
		mu.Lock()
		ended = true
		mu.Unlock()
		cancel()
		cancelAlloc()
	})
	// Generous: on 2 cores with other packages' tests (a local cluster,
	// FerretDB) running beside it, chromium once took more than 30 s.
	const startTimeout = 90 * time.Second
	start, stop := context.WithTimeout(ctx, startTimeout)
	defer stop()
	// The first Run starts the browser; it must run on ctx itself, whose
	// lifetime is the browser's, so watch the deadline from the side.
	errc := make(chan error, 1)
	go func() {
		errc <- chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.EmulateViewport(1280, 800))
	}()
	select {
	case err := <-errc:
		if err != nil {
			tb.Fatalf("start chromium: %v", err)
		}
	case <-start.Done():
		tb.Fatalf("chromium did not start within %s", startTimeout)
	}
	return ctx
}

func describeException(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "exception"
	}
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d)", s, d.URL, d.LineNumber)
}

// ArtifactDir is where tests keep files for people to look at (screenshots):
// $JETCHAT_ARTIFACTS if set, else artifacts/<sub> at the repository root,
// which .gitignore ignores. It is created if missing.
func ArtifactDir(tb testing.TB, sub string) string {
	tb.Helper()
	dir := os.Getenv("JETCHAT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(RepoFile(tb, "go.mod")), "artifacts")
	}
	dir = filepath.Join(dir, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("artifacts: %v", err)
	}
	return dir
}
