package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/auth"
	"github.com/jetchat/jetchat/pkg/client"
	"github.com/jetchat/jetchat/pkg/localcluster"
	"github.com/jetchat/jetchat/pkg/testrig"
)

// TestBrowserClusterNodeKilled: a browser on the local cluster, through
// NGINX; the node it is connected to is killed with SIGKILL while a Go client
// on another node sends 200 messages. The browser reconnects through NGINX to
// another node and shows every message once, in order.
func TestBrowserClusterNodeKilled(t *testing.T) {
	c := testrig.RunClusterWith(t, localcluster.Options{Dev: true})
	tokens, err := auth.New([]byte(c.Secret()), "jetchat")
	if err != nil {
		t.Fatal(err)
	}
	dialNode := func(user, addr string) *client.Client {
		t.Helper()
		tok, err := tokens.Issue(user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.Dial(ctxT(t, 10*time.Second), client.Options{URL: "ws://" + addr + "/ws", Token: tok, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	owner := dialNode("bob", strings.TrimPrefix(c.URL(), "http://"))
	create(t, owner, "failover", false)

	alice := openChat(t, c.URL(), "alice")
	alice.openRoom("failover")
	alice.run(`window.chainErrors = []; jetchatApp.client.on("error", e => { if (e.code === "chain") chainErrors.push(e.message) })`)
	node := eval[string](alice, `jetchatApp.client.node`)
	idx, err := strconv.Atoi(strings.TrimPrefix(node, "chatd-"))
	if err != nil {
		t.Fatalf("the browser is on node %q", node)
	}
	idx-- // chatd-1 is node 0
	bob := dialNode("bob", c.NodeAddr((idx+1)%c.Nodes()))
	if _, err := bob.Join(ctxT(t, 10*time.Second), "failover"); err != nil {
		t.Fatal(err)
	}
	go discard(bob)

	sent := make(chan error, 1)
	go func() {
		ctx := ctxT(t, 60*time.Second)
		for i := range 200 {
			if i == 50 {
				if err := c.KillNode(idx); err != nil {
					sent <- err
					return
				}
			}
			if _, err := bob.Send(ctx, "failover", fmt.Sprintf("m%03d", i)); err != nil {
				sent <- err
				return
			}
			time.Sleep(10 * time.Millisecond) // messages flow across the kill
		}
		sent <- nil
	}()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	alice.wait(`document.querySelectorAll('#message-list li[data-author="bob"]').length >= 200`, 30*time.Second)
	alice.wait(`jetchatApp.client.connected`, 10*time.Second)
	if got := alice.texts(); !slices.Equal(got, wantRun(0, 200)) {
		t.Fatalf("after the node died the page shows %d messages:\n%v", len(got), got)
	}
	if errs := eval[[]string](alice, `chainErrors`); len(errs) > 0 {
		t.Fatalf("the SDK saw broken chains: %v", errs)
	}
	now := eval[string](alice, `jetchatApp.client.node`)
	if now == node || eval[int](alice, `jetchatApp.client.reconnects`) < 1 {
		t.Fatalf("the browser is still on %s (was %s) or never reconnected", now, node)
	}
	t.Logf("browser moved from %s to %s after SIGKILL; 200 messages once, in order", node, now)
	alice.screenshot("failover")
	if err := c.StartNode(idx); err != nil {
		t.Fatal(err)
	}
}
