package localcluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Binaries built from the module, by their import paths.
const (
	chatdPkg      = "github.com/jetchat/jetchat/cmd/chatd"
	projectorPkg  = "github.com/jetchat/jetchat/cmd/projector"
	natsServerPkg = "github.com/nats-io/nats-server/v2" // the version go.mod requires
)

// RepoRoot is the directory of the jetchat module that the working
// directory is in (go env GOMOD).
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module: run from the jetchat checkout")
	}
	return filepath.Dir(mod), nil
}

// DefaultBinDir is where Build puts the binaries unless told otherwise: a
// directory in the user's cache named after the checkout, so every test
// process and the dev tool reuse one build (go build rewrites nothing that
// is up to date).
func DefaultBinDir(root string) string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(base, "jetchat", "localcluster", fmt.Sprintf("%x", sum[:6]), "bin")
}

var (
	buildMu   sync.Mutex
	buildDone = map[string]bool{} // bin dirs built by this process
)

// Build builds chatd, projector and nats-server (without -race) into binDir,
// from the module at root. It builds once per process and bin dir; a file
// lock keeps concurrent processes (test binaries of several packages) from
// writing the same files at once.
func Build(ctx context.Context, root, binDir string) error {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDone[binDir] {
		return nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("bin dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(binDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("bin dir lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("bin dir lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	for _, args := range [][]string{
		{"build", "-o", binDir + string(filepath.Separator), chatdPkg, projectorPkg},
		{"build", "-o", filepath.Join(binDir, "nats-server"), natsServerPkg},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
		}
	}
	buildDone[binDir] = true
	return nil
}

// flags returns the flag names a binary's --help lists (lines "  -name ...").
func flags(bin string) map[string]bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput() // --help exits non-zero
	set := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "-") && !strings.HasPrefix(line, "\t") {
			name := strings.TrimLeft(strings.Fields(t)[0], "-")
			set[name] = true
		}
	}
	return set
}
