package testrig

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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

var (
	beginMarker = regexp.MustCompile(`(?m)^[ \t]*# BEGIN UPSTREAMS[^\n]*\n`)
	endMarker   = regexp.MustCompile(`(?m)^[ \t]*# END UPSTREAMS`)
)

var upstreamLine = regexp.MustCompile(`(?m)^(\s*)server\s+\S+(\s.*)?;\s*$`)

// RenderNGINX renders the repository's nginx.conf for a test: the servers
// between "# BEGIN UPSTREAMS" and "# END UPSTREAMS" become upstreams, and the
// server listens on listen (host:port).
func RenderNGINX(conf string, upstreams []string, listen string) (string, error) {
	bl := beginMarker.FindStringIndex(conf)
	el := endMarker.FindStringIndex(conf)
	if bl == nil || el == nil || el[0] < bl[1] {
		return "", fmt.Errorf("nginx.conf lacks the # BEGIN UPSTREAMS / # END UPSTREAMS markers")
	}
	begin, end := bl[0], el[0]
	block := conf[bl[1]:end]
	m := upstreamLine.FindStringSubmatch(block)
	if m == nil {
		return "", fmt.Errorf("no server line between the upstream markers")
	}
	var b strings.Builder
	b.WriteString(conf[bl[0]:bl[1]])
	for _, u := range upstreams {
		fmt.Fprintf(&b, "%sserver %s%s;\n", m[1], u, strings.TrimSuffix(m[2], ";"))
	}
	out := conf[:begin] + b.String() + conf[end:]
	if !strings.Contains(out, "listen 8080;") {
		return "", fmt.Errorf("nginx.conf has no 'listen 8080;' line to render")
	}
	out = strings.Replace(out, "listen 8080;", "listen "+listen+";", 1)
	out = strings.Replace(out, "access_log /dev/stdout", "access_log access.log", 1)
	return out, nil
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
