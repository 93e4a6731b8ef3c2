package localcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the cluster, restartable with the same
// arguments. It runs in its own process group, so a signal reaches every
// process it forked (nginx's workers), and it dies with the parent (Linux
// parent-death signal) if the cluster's process dies without stopping it.
type proc struct {
	name string
	path string
	args []string
	log  string // output of every run, appended
	dir  string

	// onExit, if set, is called (in its own goroutine) when a run ends
	// without stop having been asked for: a crash.
	onExit func(err error)

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the running process has exited
	err      error         // its exit status, once done is closed
	stopping bool          // stop was asked for this run
	starting bool          // the caller of start waits for readiness and handles an exit itself
}

// start starts the process; it must not be running.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is running", p.name)
		}
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	fmt.Fprintf(f, "=== %s start %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.name, p.path, strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.stopping = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== %s exit %s: %v\n", time.Now().Format(time.RFC3339Nano), p.name, exitText(err))
		f.Close()
		p.mu.Lock()
		p.err = err
		crashed := !p.stopping && !p.starting
		p.mu.Unlock()
		close(done)
		if crashed && p.onExit != nil {
			p.onExit(err)
		}
	}()
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// setStarting marks whether the caller is waiting for the process to be
// ready: an exit meanwhile is the caller's to handle, not a crash.
func (p *proc) setStarting(v bool) {
	p.mu.Lock()
	p.starting = v
	p.mu.Unlock()
}

// running reports whether the process is running, and its done channel.
func (p *proc) state() (running bool, done chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false, nil
	}
	select {
	case <-p.done:
		return false, p.done
	default:
		return true, p.done
	}
}

// pid is the running process's id, 0 if none.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// exited returns a non-nil error if the process has exited (with its status).
func (p *proc) exited() error {
	running, done := p.state()
	if running || done == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Errorf("%s exited: %s (log: %s)", p.name, exitText(p.err), p.log)
}

// signal sends sig to the process's group.
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends sig to the group and waits up to grace for the process to exit;
// then it kills the group. Any process left in the group (a child the leader
// did not reap) is killed too. It is a no-op when the process is not running.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	running, done := p.state()
	if !running {
		p.killGroup()
		return
	}
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.signal(sig)
	if sig != syscall.SIGKILL {
		select {
		case <-done:
		case <-time.After(grace):
			fmt.Fprintf(os.Stderr, "localcluster: %s did not stop within %v after %v: killing it\n", p.name, grace, sig)
		}
	}
	p.killGroup()
	<-done
}

// killGroup SIGKILLs whatever is left in the last run's process group.
func (p *proc) killGroup() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}
