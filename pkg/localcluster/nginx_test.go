package localcluster_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jetchat/jetchat/pkg/localcluster"
)

// TestRenderNGINX: the repository's nginx.conf renders with the given
// upstreams and listen address in its directives, not in the comments that
// describe them.
func TestRenderNGINX(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(root, "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := localcluster.RenderNGINX(string(conf), []string{"127.0.0.1:1", "127.0.0.1:2"}, "127.0.0.1:3")
	if err != nil {
		t.Fatal(err)
	}
	directive := func(re string) []string { return regexp.MustCompile(`(?m)^[ \t]*`+re).FindAllString(out, -1) }
	if got := directive(`listen [^;]*;`); len(got) != 1 || !strings.HasSuffix(got[0], "listen 127.0.0.1:3;") {
		t.Errorf("listen directives: %q", got)
	}
	if got := directive(`server 127\.0\.0\.1:\d max_fails=3 fail_timeout=5s;`); len(got) != 2 {
		t.Errorf("REST upstream servers: %q", got)
	}
	if got := directive(`server 127\.0\.0\.1:\d max_fails=0;`); len(got) != 2 {
		t.Errorf("WebSocket upstream servers: %q", got)
	}
	if got := directive(`server chatd-`); len(got) != 0 {
		t.Errorf("compose upstreams left: %q", got)
	}
	if got := directive(`access_log access\.log`); len(got) != 1 {
		t.Errorf("access_log not rendered to a file: %q", got)
	}
	if _, err := localcluster.RenderNGINX(strings.ReplaceAll(string(conf), "listen 8080;", "listen 80;"), nil, "127.0.0.1:3"); err == nil {
		t.Error("a conf without 'listen 8080;' rendered")
	}
}
