package main

// Browser tests: the embedded web client (pkg/web) and its SDK (jetchat.js)
// in headless Debian chromium, driven with chromedp, against chatd started
// in-process. Each test keeps a screenshot of its final state as a PNG under
// $JETCHAT_ARTIFACTS/browser, or artifacts/browser at the repository root
// (git-ignored) when the variable is unset.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/client"
	"github.com/jetchat/jetchat/pkg/testrig"
)

// page is one browser (its own chromium and profile) showing the web client.
type page struct {
	t    *testing.T
	ctx  context.Context
	user string
}

// openChat starts a browser on base (http://host:port), signs in as user
// through the dev login form and waits until the client is connected.
func openChat(t *testing.T, base, user string) *page {
	t.Helper()
	p := &page{t: t, ctx: testrig.RunBrowser(t), user: user}
	p.do(chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("signin-name")),
		chromedp.SendKeys(chromedp.ID("signin-name"), user), chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)))
	p.wait(`window.jetchatApp?.client?.connected === true`, 10*time.Second)
	return p
}

// do runs actions with a deadline.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: browser: %v", p.user, err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAsValue))
	if err != nil {
		p.t.Fatalf("%s: eval %s: %v", p.user, expr, err)
	}
	return v
}

// run evaluates a statement for its effect.
func (p *page) run(js string) {
	p.t.Helper()
	eval[json.RawMessage](p, "(() => {"+js+"; return null})()")
}

// wait polls expr until it is truthy, failing after d with a screenshot.
func (p *page) wait(expr string, d time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[json.RawMessage](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		p.screenshot("FAILED-" + p.user)
		p.t.Fatalf("%s: waited %v for %s: %v\nbanner: %q", p.user, d, expr, err,
			eval[string](p, `document.getElementById("banner").hidden ? "" : document.getElementById("banner-text").textContent`))
	}
}

// screenshot keeps the page's viewport as a PNG artifact.
func (p *page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(testrig.ArtifactDir(p.t, "browser"), p.t.Name()+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Errorf("screenshot: %v", err)
	}
	p.t.Logf("screenshot: %s", path)
}

// openRoom clicks a room in the sidebar and waits until it is joined.
func (p *page) openRoom(room string) {
	p.t.Helper()
	p.wait(fmt.Sprintf(`document.querySelector('[data-room=%q]')`, room), 10*time.Second)
	// The list is re-rendered as events arrive: click in the page, not by node id.
	p.run(fmt.Sprintf(`document.querySelector('[data-room=%q]').click()`, room))
	p.wait(fmt.Sprintf(`jetchatApp.active === %q && jetchatApp.rooms.get(%q)?.joined`, room, room), 10*time.Second)
}

// createRoom creates a public room with the dialog and waits until it is open.
func (p *page) createRoom(name, id string) {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.ID("new-room")),
		chromedp.WaitVisible(chromedp.ID("room-name")),
		chromedp.SendKeys(chromedp.ID("room-name"), name),
		chromedp.Click(chromedp.ID("room-create")))
	p.wait(fmt.Sprintf(`jetchatApp.active === %q && jetchatApp.rooms.get(%q)?.joined`, id, id), 10*time.Second)
}

// say types text into the composer and presses Enter.
func (p *page) say(text string) {
	p.t.Helper()
	p.do(chromedp.Focus(chromedp.ID("composer-input")), chromedp.SendKeys(chromedp.ID("composer-input"), text), enter)
}

// enter presses Enter without a char event (which would insert a line break
// even though the page handles the keydown), as a real keyboard does.
var enter = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		})
		if err != nil {
			return err
		}
	}
	return nil
})

// texts is the text of every message shown, in order.
func (p *page) texts() []string {
	return eval[[]string](p, `[...document.querySelectorAll("#message-list > li:not(.pending) .msg-text")].map(e => e.firstChild ? e.firstChild.textContent : "")`)
}

// within waits at most d for expr, for latency assertions.
func (p *page) within(d time.Duration, what, expr string) {
	p.t.Helper()
	start := time.Now()
	p.wait(expr, d+2*time.Second)
	if el := time.Since(start); el > d {
		p.t.Errorf("%s: %s took %v, want under %v", p.user, what, el, d)
	}
}

func js(s string) string { b, _ := json.Marshal(s); return string(b) }

// msgWith is a JS expression for the message element whose text is text.
func msgWith(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#message-list > li")].find(li => li.querySelector(".msg-text")?.firstChild?.textContent === %s)`, js(text))
}

// TestBrowserTwoUsersChat: two browsers chat in a room on the embedded node;
// messages, edits, deletes, reactions, typing, read markers and unread counts
// reach the other within a second.
func TestBrowserTwoUsersChat(t *testing.T) {
	n := startNode(t, "", "")
	base := "http://" + n.Addr
	alice := openChat(t, base, "alice")

	// Alice creates two rooms with the dialog (the second to see unread counts).
	alice.createRoom("Random", "random")
	alice.createRoom("General", "general")

	bob := openChat(t, base, "bob")
	bob.openRoom("random")
	bob.openRoom("general")

	alice.say("Hello Bob! Welcome to jetchat.")
	bob.within(time.Second, "message", msgWith("Hello Bob! Welcome to jetchat."))
	bob.say("Hi Alice, glad to be here")
	alice.within(time.Second, "reply", msgWith("Hi Alice, glad to be here"))
	alice.wait(msgWith("Hello Bob! Welcome to jetchat.")+`?.dataset.state === "sent"`, 2*time.Second)

	// Typing: bob types without sending.
	bob.do(chromedp.SendKeys(chromedp.ID("composer-input"), "let me thi"))
	alice.within(time.Second, "typing", `document.getElementById("typing").textContent === "bob is typing…"`)
	bob.run(`const c = document.getElementById("composer-input"); c.value = ""`)

	// Edit with the keyboard: ArrowUp in the empty composer edits the last own message.
	alice.say("Thsi has a typo")
	bob.within(time.Second, "second message", msgWith("Thsi has a typo"))
	alice.do(chromedp.Focus(chromedp.ID("composer-input")), chromedp.KeyEvent(kb.ArrowUp))
	alice.wait(`document.activeElement?.classList.contains("edit-input")`, 2*time.Second)
	alice.run(`document.activeElement.value = ""`)
	alice.do(chromedp.SendKeys(chromedp.CSS(".edit-input"), "This had a typo"), enter)
	bob.within(time.Second, "edit", msgWith("This had a typo")+`?.querySelector(".edited")`)

	// Reaction: bob reacts to alice's first message.
	bob.run(msgWith("Hello Bob! Welcome to jetchat.") + `.querySelector('[data-action="react-🎉"]').click()`)
	alice.within(time.Second, "reaction", msgWith("Hello Bob! Welcome to jetchat.")+`?.querySelector(".reaction")?.textContent === "🎉 1"`)
	alice.run(msgWith("Hello Bob! Welcome to jetchat.") + `.querySelector('[data-action="react-👍"]').click()`)
	bob.within(time.Second, "second reaction", msgWith("Hello Bob! Welcome to jetchat.")+`?.querySelectorAll(".reaction").length === 2`)

	// Delete: alice deletes her edited message.
	alice.say("Oops, wrong room")
	bob.within(time.Second, "third message", msgWith("Oops, wrong room"))
	// The delete button shows once alice's send is acknowledged, which may
	// come after bob sees the message.
	alice.wait(msgWith("Oops, wrong room")+`?.querySelector('[data-action="delete"]')`, 2*time.Second)
	alice.run(`window.confirm = () => true; ` + msgWith("Oops, wrong room") + `.querySelector('[data-action="delete"]').click()`)
	bob.within(time.Second, "delete", `!(`+msgWith("Oops, wrong room")+`) && document.querySelector("#message-list .msg.deleted .msg-text")?.textContent === "This message was deleted."`)

	// Read markers: bob has seen alice's messages.
	alice.within(time.Second, "read marker", `[...document.querySelectorAll(".seen")].some(e => e.textContent === "Seen by bob")`)

	// Unread counts: a message in the room bob is not looking at.
	alice.openRoom("random")
	alice.say("Lunch at noon?")
	bob.within(time.Second, "unread badge", `document.querySelector('[data-room="random"] .badge')?.textContent === "1"`)

	// Presence: runs only once the server reports presence (joined.online or
	// the presence frame, issue 5's protocol additions); until then the client
	// shows "–" online and this assertion is skipped.
	if eval[bool](alice, `jetchatApp.rooms.get("general").online !== null`) {
		alice.openRoom("general")
		alice.within(time.Second, "presence", `document.querySelector('#people-list [data-user="bob"].is-online')`)
	} else {
		t.Log("presence: the server sends no presence yet; assertion skipped")
		alice.openRoom("general")
	}
	alice.wait(`document.getElementById("people-list").children.length >= 2`, 3*time.Second)
	// For the screenshot: bob types again (forgetting the SDK's 2 s typing throttle).
	bob.run(`jetchatApp.client.lastTyping.clear()`)
	bob.do(chromedp.SendKeys(chromedp.ID("composer-input"), "Sounds good"))
	alice.wait(`document.getElementById("typing").textContent !== ""`, 2*time.Second)
	alice.screenshot("alice")
	bob.screenshot("bob")

	// The same client on a phone-sized screen.
	bob.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	bob.wait(`getComputedStyle(document.getElementById("back")).display !== "none" && document.getElementById("people").getBoundingClientRect().left >= innerWidth`, 2*time.Second)
	bob.screenshot("bob-phone")
	bob.do(chromedp.Click(chromedp.ID("back")))
	bob.wait(`getComputedStyle(document.getElementById("sidebar")).display !== "none"`, 2*time.Second)
	bob.screenshot("bob-phone-rooms")
}

// resumeRoom sets up a room "resume" that a Go client (bob, on the node
// directly) and a browser (alice, through a cutting proxy) have joined.
func resumeRoom(t *testing.T) (*testNode, *testrig.Proxy, *client.Client, *page) {
	n := startNode(t, "", "")
	proxy := testrig.RunProxy(t, n.Addr)
	bob := dial(t, n, "bob")
	create(t, bob, "resume", false)
	if _, err := bob.Join(ctxT(t, 10*time.Second), "resume"); err != nil {
		t.Fatal(err)
	}
	go discard(bob)
	alice := openChat(t, "http://"+proxy.Addr, "alice")
	alice.openRoom("resume")
	// Chain errors would mean a gap or a duplicate reached the SDK.
	alice.run(`window.chainErrors = []; jetchatApp.client.on("error", e => { if (e.code === "chain") chainErrors.push(e.message) })`)
	return n, proxy, bob, alice
}

// cut drops the browser's connection and keeps the network down: the proxy
// closes every connection and refuses new ones until heal.
func cut(t *testing.T, p *page, proxy *testrig.Proxy) {
	proxy.SetTarget(freeAddr(t))
	proxy.CutAll()
	p.wait(`jetchatApp.client.connected === false`, 5*time.Second)
}

func heal(p *page, proxy *testrig.Proxy, n *testNode) {
	proxy.SetTarget(n.Addr)
	p.run(`jetchatApp.client.reconnectNow()`) // skip the backoff wait; the banner offers the same
}

// settled waits until the page holds the room's head: nothing in flight.
// Its own sends first: one typed just before may not be stored yet, and the
// head read now would not include it.
func settled(t *testing.T, p *page, n *testNode, room string) {
	p.wait(`jetchatApp.client.pending().length === 0`, 5*time.Second)
	var info struct{ Head uint64 }
	if err := json.Unmarshal([]byte(getJSON(t, n, "/api/v1/rooms/"+room, "bob")), &info); err != nil {
		t.Fatal(err)
	}
	p.wait(fmt.Sprintf(`jetchatApp.client.position(%q) >= %d`, room, info.Head), 5*time.Second)
}

func sendMany(t *testing.T, c *client.Client, room string, from, to int) {
	ctx := ctxT(t, 30*time.Second)
	for i := from; i < to; i++ {
		if _, err := c.Send(ctx, room, fmt.Sprintf("m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

func wantRun(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("m%03d", i))
	}
	return out
}

// TestBrowserResume: a browser whose connection is cut while a Go client
// sends 200 messages shows all 200 once, in order, after it reconnects, and
// says how many were replayed; the same after a page reload, and scrolling
// back through history then shows every message once.
func TestBrowserResume(t *testing.T) {
	n, proxy, bob, alice := resumeRoom(t)
	alice.say("before the cut")
	settled(t, alice, n, "resume")

	cut(t, alice, proxy)
	alice.wait(`document.getElementById("banner").dataset.kind === "warn"`, 5*time.Second)
	alice.screenshot("reconnecting")
	sendMany(t, bob, "resume", 0, 200)
	heal(alice, proxy, n)
	alice.wait(`document.querySelectorAll('#message-list li[data-author="bob"]').length >= 200`, 15*time.Second)
	alice.wait(`document.getElementById("banner-text").textContent === "Reconnected · 200 missed messages replayed"`, 5*time.Second)
	got := alice.texts()
	if want := append([]string{"before the cut"}, wantRun(0, 200)...); !slices.Equal(got, want) {
		t.Fatalf("after reconnect the page shows %d messages:\n%v\nwant %d", len(got), got, len(want))
	}
	if errs := eval[[]string](alice, `chainErrors`); len(errs) > 0 {
		t.Fatalf("the SDK saw broken chains: %v", errs)
	}
	alice.screenshot("resumed")

	// A page reload while disconnected: positions come from sessionStorage.
	settled(t, alice, n, "resume")
	cut(t, alice, proxy)
	sendMany(t, bob, "resume", 200, 400)
	proxy.SetTarget(n.Addr)
	alice.do(chromedp.Reload())
	alice.wait(`window.jetchatApp?.rooms.get("resume")?.joined`, 10*time.Second)
	alice.run(`window.chainErrors = []; jetchatApp.client.on("error", e => { if (e.code === "chain") chainErrors.push(e.message) })`)
	alice.wait(`document.getElementById("banner-text").textContent === "Resumed after reload · 200 missed messages replayed"`, 5*time.Second)
	alice.wait(msgWith("m399"), 5*time.Second)
	got = alice.texts()
	// The replayed 200, after the history page before them.
	if len(got) < 200 || !slices.Equal(got[len(got)-200:], wantRun(200, 400)) {
		t.Fatalf("after reload the page ends with %v", got[max(0, len(got)-205):])
	}
	alice.screenshot("reloaded")

	// Scroll back to the start: every message once, in order.
	for i := 0; i < 20 && !eval[bool](alice, `document.getElementById("older").textContent === "Beginning of the room"`); i++ {
		alice.run(`document.getElementById("messages").scrollTop = 0`)
		alice.wait(`!jetchatApp.rooms.get("resume").loadingOlder`, 5*time.Second)
		time.Sleep(50 * time.Millisecond)
	}
	got = alice.texts()
	if want := append([]string{"before the cut"}, wantRun(0, 400)...); !slices.Equal(got, want) {
		t.Fatalf("after scrolling back the page shows %d messages, want %d:\n%v", len(got), len(want), got)
	}
	if errs := eval[[]string](alice, `chainErrors`); len(errs) > 0 {
		t.Fatalf("the SDK saw broken chains: %v", errs)
	}
	alice.screenshot("history")
}

// TestBrowserSendWhileDisconnected: a message sent while the network is down
// is shown as pending, and delivered once when the connection returns; a
// second cut with the test hook (drop) right after a send, before its ack,
// still stores it once.
func TestBrowserSendWhileDisconnected(t *testing.T) {
	n, proxy, bob, alice := resumeRoom(t)
	events := make(chan chat.Event, 100)
	bob2 := dial(t, n, "bob") // a second reader, to count what is stored
	if _, err := bob2.Join(ctxT(t, 10*time.Second), "resume"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range bob2.Events() {
			if ev.Type == chat.MessageSent {
				events <- ev
			}
		}
	}()
	_ = bob

	cut(t, alice, proxy)
	alice.say("written on the train")
	alice.wait(`document.querySelector('#message-list li.pending[data-state="pending"]')?.textContent.includes("Waiting for connection")`, 2*time.Second)
	alice.screenshot("pending")
	heal(alice, proxy, n)
	alice.wait(msgWith("written on the train")+`?.dataset.state === "sent" && !document.querySelector("#message-list li.pending")`, 10*time.Second)

	// The hook: drop right after sending, so the ack may be lost; resent under the same id.
	alice.run(`document.getElementById("composer-input").value = "sent into a dropping socket"; document.getElementById("composer").requestSubmit(); jetchatApp.client.drop()`)
	alice.wait(msgWith("sent into a dropping socket")+`?.dataset.state === "sent"`, 10*time.Second)

	seen := map[string]int{}
	deadline := time.After(3 * time.Second)
	for len(seen) < 2 {
		select {
		case ev := <-events:
			seen[ev.Text]++
		case <-deadline:
			t.Fatalf("bob got %v", seen)
		}
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive by now
	for len(events) > 0 {
		ev := <-events
		seen[ev.Text]++
	}
	if seen["written on the train"] != 1 || seen["sent into a dropping socket"] != 1 || len(seen) != 2 {
		t.Fatalf("stored: %v", seen)
	}
	if got := alice.texts(); strings.Count(strings.Join(got, "\n"), "written on the train") != 1 {
		t.Fatalf("the page shows %v", got)
	}
	if c := eval[int](alice, `jetchatApp.client.pending().length`); c != 0 {
		t.Fatalf("%d actions still pending", c)
	}
	alice.screenshot("delivered")
}

// TestBrowserXSS: messages, room names and user names that carry markup are
// shown as text and run nothing.
func TestBrowserXSS(t *testing.T) {
	n := startNode(t, "", "")
	const (
		roomName = `<img src=x onerror="window.pwned='room'">Evil room`
		evilUser = `<img/src=x/onerror=window.pwned='user'>`
		msg1     = `<script>window.pwned='script'</script>`
		msg2     = `<img src=x onerror="window.pwned='img'"> look at this`
		emoji    = `<svg/onload=window.pwned=1>`
	)
	// The room over REST, as any client could make it.
	req, _ := http.NewRequest("POST", "http://"+n.Addr+"/api/v1/rooms", strings.NewReader(fmt.Sprintf(`{"id":"xss","name":%s}`, js(roomName))))
	req.Header.Set("Authorization", "Bearer "+token(t, "mallory", time.Hour))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v", err, resp)
	}
	eve := dial(t, n, evilUser)
	if _, err := eve.Join(ctxT(t, 10*time.Second), "xss"); err != nil {
		t.Fatal(err)
	}
	go discard(eve)
	ack := func(a client.Ack, err error) client.Ack {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ctx := ctxT(t, 10*time.Second)
	a1 := ack(eve.Send(ctx, "xss", msg1))
	ack(eve.Send(ctx, "xss", msg2))
	ack(eve.Do(ctx, chat.ClientFrame{Type: chat.FrameReact, Room: "xss", Target: a1.Seq, Emoji: emoji}))

	alice := openChat(t, "http://"+n.Addr, "alice")
	alice.openRoom("xss")
	alice.wait(msgWith(msg2), 5*time.Second)
	alice.say(`<b>bold?</b> <img src=x onerror="window.pwned='mine'">`)
	alice.wait(msgWith(`<b>bold?</b> <img src=x onerror="window.pwned='mine'">`)+`?.dataset.state === "sent"`, 5*time.Second)
	time.Sleep(300 * time.Millisecond) // an injected image's onerror would have run
	if v := eval[json.RawMessage](alice, `window.pwned === undefined ? null : String(window.pwned)`); string(v) != "null" {
		t.Fatalf("injected script ran: window.pwned = %s", v)
	}
	if c := eval[int](alice, `document.querySelectorAll("#app img, #app script, #app svg, #app b").length`); c != 0 {
		t.Fatalf("%d injected elements in the page", c)
	}
	if got := eval[string](alice, `document.querySelector('[data-room="xss"] .room-name').textContent`); got != roomName {
		t.Fatalf("room name shown as %q", got)
	}
	if got := eval[string](alice, `document.getElementById("room-title").textContent`); got != "# "+roomName {
		t.Fatalf("room title shown as %q", got)
	}
	if got := eval[string](alice, msgWith(msg1)+`.querySelector(".msg-author").textContent`); got != evilUser {
		t.Fatalf("author shown as %q", got)
	}
	if got := eval[string](alice, msgWith(msg1)+`.querySelector(".reaction").textContent`); got != emoji+" 1" {
		t.Fatalf("reaction shown as %q", got)
	}
	alice.screenshot("alice")
}

// TestBrowserGapRepaired: an event lost between the socket and the SDK (the
// page drops one frame on purpose) is found by the prev-chain check and
// repaired by unsubscribe + join with since: the page still shows every
// message once, in order, and the SDK reports the gap once.
func TestBrowserGapRepaired(t *testing.T) {
	_, _, bob, alice := resumeRoom(t)
	alice.run(`const c = jetchatApp.client, deliver = c.event.bind(c); let lost = false;
		c.event = (ws, e) => { if (!lost && e.text === "m050") { lost = true; return } deliver(ws, e) }`)
	sendMany(t, bob, "resume", 0, 100)
	alice.wait(msgWith("m099"), 10*time.Second)
	alice.wait(`document.querySelectorAll('#message-list li[data-author="bob"]').length >= 100`, 5*time.Second)
	if got := alice.texts(); !slices.Equal(got, wantRun(0, 100)) {
		t.Fatalf("the page shows %v", got)
	}
	errs := eval[[]string](alice, `chainErrors`)
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "gap in room resume") {
		t.Fatalf("chain reports: %v", errs)
	}
}
