package testrig

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetchat/jetchat/pkg/localcluster"
)

// RepoFile returns the path of a file at the repository's root.
func RepoFile(tb testing.TB, name string) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), name)
}

// Need fails the test unless the named program is installed, saying how to
// install it (the README's test command installs it first).
func Need(tb testing.TB, program, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		tb.Fatalf("%s is not installed: apt-get install -y %s (or run the README's test command, which installs it)", program, debianPackage)
	}
	return path
}

// RenderNGINX renders the repository's nginx.conf for a test: the servers
// between "# BEGIN UPSTREAMS" and "# END UPSTREAMS" become upstreams, and the
// server listens on listen (host:port). The rendering lives in localcluster,
// which the dev tool shares without linking package testing.
func RenderNGINX(conf string, upstreams []string, listen string) (string, error) {
	return localcluster.RenderNGINX(conf, upstreams, listen)
}

// CheckNGINX renders conf into a temp prefix and runs nginx -t on it.
func CheckNGINX(tb testing.TB, conf string) error {
	tb.Helper()
	bin := Need(tb, "nginx", "nginx")
	dir := tb.TempDir()
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", "-p", dir+"/", "-c", path, "-e", "stderr").CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -t: %v\n%s", err, out)
	}
	return nil
}
