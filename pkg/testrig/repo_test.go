package testrig_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jetchat/jetchat/pkg/testrig"
)

// TestNGINXConf: the repository's nginx.conf, rendered for loopback
// upstreams as the tests run it, passes nginx -t.
func TestNGINXConf(t *testing.T) {
	t.Parallel()
	conf, err := os.ReadFile(testrig.RepoFile(t, "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := testrig.RenderNGINX(string(conf), []string{"127.0.0.1:18081", "127.0.0.1:18082"}, "127.0.0.1:18080")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rendered, "server chatd-1") || !strings.Contains(rendered, "server 127.0.0.1:18082 max_fails") {
		t.Fatalf("upstreams not rendered:\n%s", rendered)
	}
	if err := testrig.CheckNGINX(t, rendered); err != nil {
		t.Fatal(err)
	}
	t.Run("ErrBrokenConf", func(t *testing.T) {
		if err := testrig.CheckNGINX(t, strings.Replace(rendered, "events {", "events {{", 1)); err == nil {
			t.Fatal("nginx -t accepted a broken config")
		}
	})
}

// TestComposeFile: docker-compose.yaml is valid for docker-compose (Debian's
// v1 validates without a Docker engine).
func TestComposeFile(t *testing.T) {
	t.Parallel()
	bin := testrig.Need(t, "docker-compose", "--no-install-recommends docker-compose")
	file := testrig.RepoFile(t, "docker-compose.yaml")
	cmd := exec.Command(bin, "-f", file, "config", "-q")
	cmd.Env = append(os.Environ(), "CHAT_JWT_SECRET=") // the file's own default must hold
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
