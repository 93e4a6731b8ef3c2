// The jetchat web client. Plain DOM on top of jetchat.js.
//
// Every string that comes from a user or the server is rendered with
// textContent or as an attribute value, never as HTML.

import { Api, ChatError, Client, devLogin, newId, validRoomId } from "./jetchat.js";

const $ = (id) => document.getElementById(id);
const AUTH_KEY = "jetchat:auth";
const PAGE = 50;
const QUICK_EMOJI = ["👍", "🎉", "❤️"];

/** @type {Client|null} */ let client = null;
/** @type {Api|null} */ let api = null;
let me = "";
let active = "";                 // the room on screen
/** @type {Map<string, RoomView>} */ const rooms = new Map();
let roomsTimer = 0;
let bannerTimer = 0;
let renderQueued = false;

/**
 * @typedef {Object} Msg
 * @property {number} seq
 * @property {string} id
 * @property {string} author
 * @property {string} ts
 * @property {string} text
 * @property {boolean} edited
 * @property {boolean} deleted
 * @property {Map<string, Set<string>>} reactions
 * @property {number} v   version, bumped on every change (re-render)
 */

/** @typedef {ReturnType<typeof newRoomView>} RoomView */
function newRoomView(info) {
  return {
    id: info.id, name: info.name || info.id, private: !!info.private, creator: info.creator || "",
    member: !!info.member, last: info.last || null, restUnread: info.unread,
    /** @type {Map<number, Msg>} */ msgs: new Map(),
    /** @type {Map<string, {id: string, text: string, state: string, error?: string, ts: string}>} */ pendings: new Map(),
    oldest: 0, hasMore: true, loadingOlder: false, loadedOnce: false,
    joined: false, joining: null, unread: 0, read: 0,
    /** @type {Map<string, number>} */ readers: new Map(),
    /** @type {Map<string, number>} */ typing: new Map(),
    /** @type {Set<string>|null} */ online: null,
    members: /** @type {string[]|null} */ (null),
    /** @type {Map<number, Object[]>} */ orphans: new Map(),
    editing: 0, lastRead: 0, readTimer: 0,
  };
}

// ---------- sign in ----------

function start() {
  const saved = readAuth();
  if (saved) enter(saved.token, saved.user);
  else showSignin();
}

function readAuth() {
  try { return JSON.parse(sessionStorage.getItem(AUTH_KEY) || "null"); } catch { return null; }
}

function showSignin(message = "") {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("signin-name").focus();
}

let tokenMode = false;
$("signin-toggle").addEventListener("click", () => setTokenMode(!tokenMode));
function setTokenMode(on) {
  tokenMode = on;
  $("signin-dev").hidden = on;
  $("signin-token").hidden = !on;
  $("signin-name").required = !on;
  $("signin-toggle").textContent = on ? "Use dev login instead" : "Use a token instead";
  (on ? $("signin-token-input") : $("signin-name")).focus();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  try {
    if (tokenMode) {
      const token = $("signin-token-input").value.trim();
      if (!token) throw new Error("Paste a token first.");
      enter(token, "");
    } else {
      const { token, user } = await devLogin("", $("signin-name").value.trim());
      enter(token, user);
    }
  } catch (e) {
    if (e instanceof ChatError && e.status === 404) {
      setTokenMode(true);
      $("signin-error").textContent = "Dev login is off on this server: paste a token.";
    } else {
      $("signin-error").textContent = e.message || String(e);
    }
  }
});

function enter(token, user) {
  sessionStorage.setItem(AUTH_KEY, JSON.stringify({ token, user }));
  $("signin").hidden = true;
  $("app").hidden = false;
  me = user;
  api = new Api({ token });
  client = new Client({ token });
  window.jetchatApp = { client, api, rooms, get active() { return active; } }; // for tests and debugging
  wireClient(client);
  setMe();
  client.connect().then(async (w) => {
    me = w.user;
    sessionStorage.setItem(AUTH_KEY, JSON.stringify({ token, user: me }));
    setMe();
    await refreshRooms(true);
    const want = decodeURIComponent(location.hash.slice(1));
    if (want && rooms.has(want)) openRoom(want);
    else if (!active && window.matchMedia("(min-width: 720px)").matches) {
      const first = [...rooms.values()].find((r) => r.member);
      if (first) openRoom(first.id);
    }
  }).catch((e) => {
    sessionStorage.removeItem(AUTH_KEY);
    client?.close();
    showSignin(e.code === "unauthorized" ? "That token was refused. Sign in again." : (e.message || String(e)));
  });
  clearInterval(roomsTimer);
  roomsTimer = setInterval(() => { if (client?.connected) refreshRooms(false); }, 15000);
}

$("signout").addEventListener("click", () => {
  sessionStorage.clear();
  location.hash = "";
  location.reload();
});

function setMe() {
  $("me-name").textContent = me || "…";
  setAvatar($("me-avatar"), me || "?");
}

// ---------- rooms ----------

async function refreshRooms(first) {
  let list;
  try { list = await api.rooms(); } catch (e) { toast(`Could not load rooms: ${e.message}`); return; }
  for (const info of list) {
    let r = rooms.get(info.id);
    if (!r) { r = newRoomView(info); rooms.set(info.id, r); }
    else {
      r.name = info.name || info.id; r.private = !!info.private; r.creator = info.creator || "";
      r.member = !!info.member || r.joined; r.last = info.last || r.last;
      if (!r.joined && typeof info.unread === "number") r.restUnread = info.unread;
    }
  }
  // Join every room we are a member of: live unread counts and no gaps.
  const joins = [];
  for (const r of rooms.values()) if (r.member && !r.joined && !r.joining) joins.push(joinRoom(r));
  renderRooms();
  if (first && joins.length) {
    const results = (await Promise.allSettled(joins)).filter((x) => x.status === "fulfilled" && x.value);
    const resumed = results.map((x) => x.value).filter((j) => j.restored);
    if (resumed.length) {
      const n = resumed.reduce((s, j) => s + j.replayedMessages, 0);
      showBanner("ok", `Resumed after reload · ${n} missed ${plural(n, "message")} replayed`, 8000);
    }
  }
}

/** Joins a room over the WebSocket; the first visit gets the latest page. */
function joinRoom(r) {
  r.joining = client.join(r.id, { limit: PAGE }).then((j) => {
    r.joining = null;
    onJoined(r, j);
    return j;
  }, (e) => {
    r.joining = null;
    toast(`Could not join ${r.name}: ${e.message}`);
    return null;
  });
  return r.joining;
}

function onJoined(r, j) {
  r.joined = true;
  r.member = true;
  if (Array.isArray(j.online)) r.online = new Set(j.online);
  if (typeof j.read === "number") r.read = Math.max(r.read, j.read);
  r.read = Math.max(r.read, client.readMarker(r.id));
  if (j.messages) {
    mergePage(r, j.messages, true);
    if (typeof j.unread === "number") r.unread = j.unread;
    else if (typeof r.restUnread === "number") r.unread = r.restUnread;
    else r.unread = 0;
  } else if (typeof j.unread === "number") {
    r.unread = j.unread;
  }
  if (!j.recovered) { r.msgs.clear(); r.oldest = 0; r.hasMore = true; r.loadedOnce = false; }
  // Resumed with since (reload or first load with a stored position): fill what came before it.
  if (!r.loadedOnce && !j.messages) loadOlder(r, j.resumed && j.recovered ? j.since + 1 : 0);
  r.loadedOnce = r.loadedOnce || !!j.messages;
  if (!j.messages && j.resumed && r.msgs.size === 0 && !r.hasMore) r.loadedOnce = true;
  for (const p of client.pending(r.id)) if (p.type === "send" && !r.pendings.has(p.id) && !hasMsgId(r, p.id)) {
    r.pendings.set(p.id, { id: p.id, text: p.text, state: "pending", ts: new Date().toISOString() });
  }
  if (r.online === null) fetchPresence(r);
  if (r.id === active) fetchMembers(r);
  schedule();
}

async function fetchPresence(r) {
  try {
    const online = await api.presence(r.id);
    if (online && r.online === null) { r.online = new Set(online); schedule(); }
  } catch { /* presence is optional */ }
}

async function fetchMembers(r) {
  try { r.members = (await api.members(r.id)).map((m) => m.user); schedule(); } catch { /* shown when it works */ }
}

function openRoom(id) {
  const r = rooms.get(id);
  if (!r) return;
  if (active !== id) {
    const prev = rooms.get(active);
    if (prev) prev.editing = 0;
  }
  active = id;
  if (location.hash.slice(1) !== encodeURIComponent(id)) history.replaceState(null, "", "#" + encodeURIComponent(id));
  document.body.classList.add("in-room");
  if (!r.joined && !r.joining) joinRoom(r).then(() => refreshRooms(false));
  fetchMembers(r);
  renderAll(true);
  $("composer-input").focus({ preventScroll: true });
}

// ---------- events from the client ----------

function wireClient(c) {
  c.on("state", (s) => {
    $("me-status").textContent = s.state === "closed" ? " · offline" : (c.connected ? " · online" : " · offline");
    switch (s.state) {
      case "connecting":
        showBanner("info", s.attempt ? `Can't reach the server. Retrying in ${secs(s.delay)}…` : "Connecting…", 0, !!s.attempt);
        break;
      case "connected": hideBanner(); break;
      case "reconnecting":
        showBanner("warn", `Connection lost. Reconnecting${s.delay > 400 ? ` in ${secs(s.delay)}` : ""}…`, 0, true);
        break;
      case "resumed": {
        const n = s.replayedMessages;
        showBanner("ok", `Reconnected · ${n} missed ${plural(n, "message")} replayed`, 8000);
        refreshRooms(false);
        break;
      }
      case "closed":
        showBanner("error", `Disconnected: ${s.reason || "closed"}.`, 0);
        if (s.error?.code === "unauthorized") { sessionStorage.removeItem(AUTH_KEY); showSignin("Your session expired. Sign in again."); }
        break;
    }
    schedule();
  });
  c.on("event", onEvent);
  c.on("typing", ({ room, user }) => {
    const r = rooms.get(room);
    if (!r || user === me) return;
    r.typing.set(user, Date.now() + 4000);
    schedule();
  });
  c.on("presence", ({ room, user, online }) => {
    const r = rooms.get(room);
    if (!r) return;
    if (!r.online) r.online = new Set();
    if (online) r.online.add(user); else r.online.delete(user);
    schedule();
  });
  c.on("ack", (a) => {
    const r = rooms.get(a.room);
    if (!r || a.type !== "send") return;
    const p = r.pendings.get(a.id);
    if (!p) return;
    if (hasMsgId(r, a.id)) r.pendings.delete(a.id);
    else p.state = "sent";
    schedule();
  });
  c.on("error", (e) => {
    if (e.code === "chain") return; // repaired by the client; nothing for the user to do
    if (e.code === "not_recovered") { toast("Some history was too old to replay; reloading the room."); return; }
    if (e.frame) return; // shown on the action that failed
    if (e.code !== "closed") toast(e.message);
  });
}

function onEvent(ev) {
  const r = rooms.get(ev.room);
  if (!r) return;
  switch (ev.type) {
    case "message.sent": {
      const m = { seq: ev.seq, id: ev.id, author: ev.author, ts: ev.ts, text: ev.text || "", edited: false, deleted: false, reactions: new Map(), v: 0 };
      r.msgs.set(ev.seq, m);
      applyOrphans(r, m);
      if (ev.author === me) r.pendings.delete(ev.id);
      else if (ev.seq > r.read && !(ev.room === active && atBottom() && pageVisible())) r.unread++;
      if (!r.oldest) { r.oldest = ev.seq; }
      break;
    }
    case "message.edited": case "message.deleted": case "reaction.added": case "reaction.removed": {
      const m = r.msgs.get(ev.target);
      if (m) applyOp(m, ev);
      else if (ev.target) { // not loaded yet: applied when its page arrives
        const list = r.orphans.get(ev.target) || [];
        list.push(ev);
        r.orphans.set(ev.target, list);
      }
      break;
    }
    case "read.moved":
      if (ev.author === me) {
        r.read = Math.max(r.read, ev.target || 0);
        r.unread = countUnread(r);
      } else r.readers.set(ev.author, Math.max(r.readers.get(ev.author) || 0, ev.target || 0));
      break;
    case "member.joined": case "member.left":
      if (r.members) {
        const set = new Set(r.members);
        if (ev.type === "member.joined") set.add(ev.user); else set.delete(ev.user);
        r.members = [...set];
      }
      break;
    default: break;
  }
  if (ev.type !== "read.moved" && ev.author) r.typing.delete(ev.author);
  schedule();
}

function applyOp(m, ev) {
  switch (ev.type) {
    case "message.edited": m.text = ev.text || ""; m.edited = true; break;
    case "message.deleted": m.deleted = true; m.text = ""; m.reactions.clear(); break;
    case "reaction.added": {
      const s = m.reactions.get(ev.emoji) || new Set();
      s.add(ev.author);
      m.reactions.set(ev.emoji, s);
      break;
    }
    case "reaction.removed": {
      const s = m.reactions.get(ev.emoji);
      if (s) { s.delete(ev.author); if (!s.size) m.reactions.delete(ev.emoji); }
      break;
    }
  }
  m.v++;
}

function applyOrphans(r, m) {
  const ops = r.orphans.get(m.seq);
  if (!ops) return;
  r.orphans.delete(m.seq);
  for (const op of ops) applyOp(m, op);
}

function hasMsgId(r, id) {
  for (const m of r.msgs.values()) if (m.id === id && m.author === me) return true;
  return false;
}

function countUnread(r) {
  let n = 0;
  for (const m of r.msgs.values()) if (m.seq > r.read && m.author !== me && !m.deleted) n++;
  return Math.min(n, r.unread);
}

/** Merges a history page (oldest first) into the room. */
function mergePage(r, page, latest) {
  for (const h of page) {
    if (r.msgs.has(h.seq)) continue; // live events are newer than any page
    const m = {
      seq: h.seq, id: h.id, author: h.author, ts: h.ts, text: h.text || "", edited: !!h.edited, deleted: !!h.deleted,
      reactions: new Map((h.reactions || []).map((x) => [x.emoji, new Set(x.users)])), v: 0,
    };
    r.msgs.set(h.seq, m);
    applyOrphans(r, m);
    if (m.author === me) r.pendings.delete(m.id);
  }
  if (page.length) r.oldest = r.oldest ? Math.min(r.oldest, page[0].seq) : page[0].seq;
  if (page.length < PAGE) r.hasMore = false;
  if (latest) r.loadedOnce = true;
}

/** Loads the page before the oldest message shown (or before `before`). */
async function loadOlder(r, before = 0) {
  if (r.loadingOlder || !r.hasMore) return;
  const b = before || r.oldest;
  if (!b && r.loadedOnce) { r.hasMore = false; return; }
  r.loadingOlder = true;
  schedule();
  try {
    const page = await client.history(r.id, b ? { before: b, limit: PAGE } : { limit: PAGE });
    const list = $("messages");
    const keep = r.id === active ? list.scrollHeight - list.scrollTop : 0;
    mergePage(r, page, false);
    r.loadedOnce = true;
    r.loadingOlder = false;
    if (r.id === active) {
      render();
      list.scrollTop = list.scrollHeight - keep; // stay where the reader was
    }
  } catch (e) {
    r.loadingOlder = false;
    toast(`Could not load history: ${e.message}`);
  }
  schedule();
}

// ---------- actions ----------

$("composer").addEventListener("submit", (ev) => { ev.preventDefault(); sendComposer(); });
$("composer-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); sendComposer(); return; }
  if (ev.key === "ArrowUp" && !ev.target.value) {
    const r = rooms.get(active);
    const mine = r && [...r.msgs.values()].filter((m) => m.author === me && !m.deleted).sort((a, b) => b.seq - a.seq)[0];
    if (mine) { ev.preventDefault(); startEdit(r, mine.seq); }
  }
});
$("composer-input").addEventListener("input", (ev) => {
  autosize(ev.target);
  if (active && ev.target.value) client.typing(active);
});

function sendComposer() {
  const input = $("composer-input");
  const text = input.value.trim();
  const r = rooms.get(active);
  if (!text || !r) return;
  if (new TextEncoder().encode(text).length > 4096) { toast("That message is over 4 KiB."); return; }
  input.value = "";
  autosize(input);
  sendText(r, text, newId());
  stickToBottom = true;
}

function sendText(r, text, id) {
  r.pendings.set(id, { id, text, state: "pending", ts: new Date().toISOString() });
  schedule();
  client.send(r.id, text, { id }).catch((e) => {
    const p = r.pendings.get(id);
    if (p) { p.state = "failed"; p.error = e.message; }
    schedule();
  });
}

function startEdit(r, seq) {
  r.editing = seq;
  render();
  const ta = document.querySelector(`[data-seq="${seq}"] .edit-input`);
  if (ta) { ta.focus(); ta.setSelectionRange(ta.value.length, ta.value.length); }
}

function toggleReaction(r, m, emoji) {
  const mine = m.reactions.get(emoji)?.has(me);
  const p = mine ? client.unreact(r.id, m.seq, emoji) : client.react(r.id, m.seq, emoji);
  p.catch((e) => toast(`Reaction failed: ${e.message}`));
}

// ---------- rendering ----------

let stickToBottom = true;
$("messages").addEventListener("scroll", () => {
  const r = rooms.get(active);
  stickToBottom = atBottom();
  if (!r) return;
  if ($("messages").scrollTop < 120) loadOlder(r);
  if (stickToBottom) markRead(r);
});
document.addEventListener("visibilitychange", () => { const r = rooms.get(active); if (r) markRead(r); });

function atBottom() {
  const el = $("messages");
  return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
}
function pageVisible() { return document.visibilityState !== "hidden"; }

/**
 * Sends read when the newest message is visible. Each read is an event every
 * member receives: at most one per room every 500 ms (the last one is sent).
 */
function markRead(r) {
  if (!r.joined || !pageVisible() || !atBottom() || $("messages").hidden) return;
  const wait = (r.lastRead || 0) + 500 - Date.now();
  if (wait > 0) {
    if (!r.readTimer) r.readTimer = setTimeout(() => { r.readTimer = 0; if (r.id === active) markRead(r); }, wait);
    return;
  }
  let newest = 0;
  for (const seq of r.msgs.keys()) if (seq > newest) newest = seq;
  if (newest > r.read) {
    r.read = newest;
    r.unread = 0;
    r.lastRead = Date.now();
    client.read(r.id, newest).catch(() => { /* retried by the client; final errors are harmless */ });
    renderRooms();
  } else if (r.unread) { r.unread = 0; renderRooms(); }
}

function schedule() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => { renderQueued = false; render(); }, 16);
}

function renderAll(jump) {
  if (jump) stickToBottom = true;
  render();
}

function render() {
  renderRooms();
  renderRoom();
}

function renderRooms() {
  const mine = [...rooms.values()].filter((r) => r.member).sort(byActivity);
  const others = [...rooms.values()].filter((r) => !r.member && !r.private).sort((a, b) => a.name.localeCompare(b.name));
  fillList($("room-list"), mine, roomItem);
  fillList($("browse-list"), others, roomItem);
  $("browse-title").hidden = others.length === 0;
  if (!mine.length && !$("room-list").querySelector(".hint")) {
    const li = document.createElement("li");
    li.className = "hint muted small";
    li.textContent = "No rooms yet: create one with +.";
    $("room-list").append(li);
  }
}

function byActivity(a, b) {
  return lastSeq(b) - lastSeq(a) || a.name.localeCompare(b.name);
}
function lastSeq(r) {
  let n = r.last?.seq || 0;
  for (const seq of r.msgs.keys()) if (seq > n) n = seq;
  return n;
}

function roomItem(r) {
  const li = document.createElement("li");
  const b = document.createElement("button");
  b.type = "button";
  b.className = "room" + (r.id === active ? " active" : "");
  b.dataset.room = r.id;
  if (r.id === active) b.setAttribute("aria-current", "page");
  const icon = document.createElement("span");
  icon.className = "room-icon";
  icon.textContent = r.private ? "🔒" : "#";
  icon.setAttribute("aria-hidden", "true");
  const name = document.createElement("span");
  name.className = "room-name";
  name.textContent = r.name;
  const preview = document.createElement("span");
  preview.className = "room-preview muted small";
  const last = newestMsg(r);
  if (last) preview.textContent = `${last.author}: ${last.deleted ? "message deleted" : last.text}`;
  else if (r.last) preview.textContent = `${r.last.author}: ${r.last.deleted ? "message deleted" : r.last.text}`;
  else preview.textContent = r.member ? "" : "Public room · join";
  b.append(icon, name, preview);
  const unread = r.joined ? r.unread : (r.restUnread || 0);
  if (unread > 0 && r.id !== active) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.setAttribute("aria-label", `${unread} unread`);
    b.append(badge);
    b.classList.add("has-unread");
  }
  b.addEventListener("click", () => openRoom(r.id));
  li.append(b);
  return li;
}

function newestMsg(r) {
  let best = null;
  for (const m of r.msgs.values()) if (!best || m.seq > best.seq) best = m;
  return best;
}

/** Replaces a list's items, keeping focus on the same room button. */
function fillList(ul, items, make) {
  const focused = document.activeElement?.dataset?.room;
  ul.replaceChildren(...items.map(make));
  if (focused) ul.querySelector(`[data-room="${CSS.escape(focused)}"]`)?.focus();
}

const msgNodes = new Map(); // key -> {el, v}

function renderRoom() {
  const r = rooms.get(active);
  $("empty").hidden = !!r;
  $("messages").hidden = !r;
  $("composer").hidden = !r;
  $("people-toggle").hidden = !r;
  if (!r) {
    $("room-title").textContent = "Pick a room";
    $("room-sub").textContent = "";
    $("invite").hidden = true;
    $("typing").textContent = "";
    return;
  }
  $("room-title").textContent = (r.private ? "🔒 " : "# ") + r.name;
  const memberCount = r.members ? r.members.length : null;
  $("room-sub").textContent = [r.private ? "Private room" : "Public room", memberCount !== null ? `${memberCount} ${plural(memberCount, "member")}` : ""].filter(Boolean).join(" · ");
  $("invite").hidden = !(r.private && r.creator === me);
  $("online-count").textContent = r.online ? `${r.online.size} online` : "People";
  $("people-toggle").classList.toggle("no-presence", !r.online);
  document.title = `${r.name} · jetchat`;

  const list = $("messages");
  const wasBottom = stickToBottom;
  renderMessages(r);
  $("older").textContent = r.loadingOlder ? "Loading older messages…" : (r.hasMore ? "" : (r.msgs.size ? "Beginning of the room" : ""));
  renderTyping(r);
  renderPeople(r);
  if (wasBottom) { list.scrollTop = list.scrollHeight; markRead(r); }
}

function renderMessages(r) {
  const ol = $("message-list");
  const keys = [];
  const seen = new Set();
  const sorted = [...r.msgs.values()].sort((a, b) => a.seq - b.seq);
  // Others' read markers: shown under the newest message each has read.
  const seenBy = new Map();
  for (const [user, mark] of r.readers) {
    let at = 0;
    for (const m of sorted) if (m.seq <= mark) at = m.seq;
    if (at) seenBy.set(at, [...(seenBy.get(at) || []), user].sort());
  }
  let prev = null;
  for (const m of sorted) {
    const grouped = prev && prev.author === m.author && !prev.deleted && Date.parse(m.ts) - Date.parse(prev.ts) < 5 * 60 * 1000;
    const by = seenBy.get(m.seq);
    const key = `m${m.seq}`;
    const ver = `${m.v}|${grouped ? 1 : 0}|${r.editing === m.seq ? 1 : 0}|${by ? by.join(",") : ""}`;
    keys.push(key);
    let node = msgNodes.get(key);
    // A message being edited keeps its element: a re-render must not throw the draft away.
    const keepEdit = node && node.room === r.id && node.editing && r.editing === m.seq;
    if (!keepEdit && (!node || node.v !== ver || node.room !== r.id)) {
      const el = messageEl(r, m, grouped, by);
      if (node?.el.contains(document.activeElement) && r.editing !== m.seq) {
        const cls = document.activeElement.dataset.action;
        queueMicrotask(() => el.querySelector(`[data-action="${cls}"]`)?.focus());
      }
      node?.el.remove();
      node = { el, v: ver, room: r.id, editing: r.editing === m.seq };
      msgNodes.set(key, node);
    }
    seen.add(key);
    prev = m;
  }
  const pend = [...r.pendings.values()].filter((p) => !hasMsgId(r, p.id));
  for (const p of pend) {
    const key = `p${p.id}`;
    const ver = `${p.state}|${p.error || ""}`;
    keys.push(key);
    let node = msgNodes.get(key);
    if (!node || node.v !== ver || node.room !== r.id) {
      node?.el.remove();
      node = { el: pendingEl(r, p), v: ver, room: r.id };
      msgNodes.set(key, node);
    }
    seen.add(key);
  }
  for (const [key, node] of msgNodes) if (!seen.has(key) || node.room !== r.id) { node.el.remove(); msgNodes.delete(key); }
  // Put the nodes in order, moving only those out of place.
  let cur = ol.firstChild;
  for (const key of keys) {
    const el = msgNodes.get(key).el;
    if (cur === el) { cur = cur.nextSibling; continue; }
    ol.insertBefore(el, cur);
  }
  while (cur) { const next = cur.nextSibling; cur.remove(); cur = next; }
}

function messageEl(r, m, grouped, seenBy) {
  const li = document.createElement("li");
  li.className = "msg" + (grouped ? " grouped" : "") + (m.author === me ? " mine" : "") + (m.deleted ? " deleted" : "");
  li.dataset.seq = String(m.seq);
  li.dataset.id = m.id;
  li.dataset.author = m.author;
  li.dataset.state = "sent";
  const av = document.createElement("span");
  av.className = "avatar";
  av.setAttribute("aria-hidden", "true");
  if (!grouped) setAvatar(av, m.author);
  const body = document.createElement("div");
  body.className = "msg-body";
  if (!grouped) {
    const head = document.createElement("div");
    head.className = "msg-head";
    const who = document.createElement("strong");
    who.className = "msg-author";
    who.textContent = m.author;
    const when = document.createElement("time");
    when.className = "muted small";
    when.dateTime = m.ts;
    when.textContent = timeOf(m.ts);
    when.title = new Date(m.ts).toLocaleString();
    head.append(who, " ", when);
    body.append(head);
  }
  if (r.editing === m.seq) {
    body.append(editForm(r, m));
  } else {
    const text = document.createElement("div");
    text.className = "msg-text";
    text.textContent = m.deleted ? "This message was deleted." : m.text;
    if (m.edited && !m.deleted) {
      const ed = document.createElement("span");
      ed.className = "edited muted small";
      ed.textContent = " (edited)";
      text.append(ed);
    }
    body.append(text);
  }
  if (m.reactions.size && !m.deleted) {
    const rx = document.createElement("div");
    rx.className = "reactions";
    for (const [emoji, users] of [...m.reactions].sort((a, b) => a[0].localeCompare(b[0]))) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "reaction" + (users.has(me) ? " mine" : "");
      b.dataset.action = `rx-${emoji}`;
      b.title = [...users].sort().join(", ");
      b.setAttribute("aria-pressed", String(users.has(me)));
      b.textContent = `${emoji} ${users.size}`;
      b.addEventListener("click", () => toggleReaction(r, m, emoji));
      rx.append(b);
    }
    body.append(rx);
  }
  if (seenBy) {
    const s = document.createElement("div");
    s.className = "seen muted small";
    s.textContent = `Seen by ${seenBy.join(", ")}`;
    body.append(s);
  }
  li.append(av, body);
  if (!m.deleted && r.editing !== m.seq) li.append(messageActions(r, m));
  return li;
}

function messageActions(r, m) {
  const bar = document.createElement("div");
  bar.className = "msg-actions";
  bar.setAttribute("role", "toolbar");
  bar.setAttribute("aria-label", `Actions for the message by ${m.author}`);
  for (const emoji of QUICK_EMOJI) {
    bar.append(actionButton(emoji, `React ${emoji}`, `react-${emoji}`, () => toggleReaction(r, m, emoji)));
  }
  if (m.author === me) {
    bar.append(actionButton("Edit", "Edit message", "edit", () => startEdit(r, m.seq)));
    bar.append(actionButton("Delete", "Delete message", "delete", () => {
      if (!confirm("Delete this message?")) return;
      client.delete(r.id, m.seq).catch((e) => toast(`Delete failed: ${e.message}`));
    }));
  }
  return bar;
}

function actionButton(label, aria, action, fn) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "btn tiny";
  b.textContent = label;
  b.dataset.action = action;
  b.setAttribute("aria-label", aria);
  b.addEventListener("click", fn);
  return b;
}

function editForm(r, m) {
  const f = document.createElement("form");
  f.className = "edit-form";
  const ta = document.createElement("textarea");
  ta.className = "edit-input";
  ta.value = m.text;
  ta.maxLength = 4096;
  ta.rows = 2;
  ta.setAttribute("aria-label", "Edit message");
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "btn primary small";
  save.textContent = "Save";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "btn ghost small";
  cancel.textContent = "Cancel";
  const done = () => { r.editing = 0; render(); $("composer-input").focus(); };
  const submit = () => {
    const text = ta.value.trim();
    if (text && text !== m.text) client.edit(r.id, m.seq, text).catch((e) => toast(`Edit failed: ${e.message}`));
    done();
  };
  f.addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
  ta.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); submit(); }
    if (ev.key === "Escape") { ev.preventDefault(); done(); }
  });
  const hint = document.createElement("span");
  hint.className = "muted small";
  hint.textContent = "Enter to save · Esc to cancel";
  const row = document.createElement("div");
  row.className = "row";
  row.append(save, cancel, hint);
  f.append(ta, row);
  return f;
}

function pendingEl(r, p) {
  const li = document.createElement("li");
  li.className = `msg mine pending state-${p.state}`;
  li.dataset.id = p.id;
  li.dataset.state = p.state;
  const av = document.createElement("span");
  av.className = "avatar";
  av.setAttribute("aria-hidden", "true");
  setAvatar(av, me);
  const body = document.createElement("div");
  body.className = "msg-body";
  const head = document.createElement("div");
  head.className = "msg-head";
  const who = document.createElement("strong");
  who.className = "msg-author";
  who.textContent = me;
  const st = document.createElement("span");
  st.className = "status small";
  st.textContent = p.state === "failed" ? `Not sent: ${p.error || "error"}` : (p.state === "sent" ? "Sent" : (client.connected ? "Sending…" : "Waiting for connection…"));
  head.append(who, " ", st);
  const text = document.createElement("div");
  text.className = "msg-text";
  text.textContent = p.text;
  body.append(head, text);
  if (p.state === "failed") {
    const row = document.createElement("div");
    row.className = "row";
    row.append(
      actionButton("Retry", "Retry sending", "retry", () => { r.pendings.delete(p.id); sendText(r, p.text, p.id); }),
      actionButton("Discard", "Discard message", "discard", () => { r.pendings.delete(p.id); schedule(); }),
    );
    body.append(row);
  }
  li.append(av, body);
  return li;
}

function renderTyping(r) {
  const now = Date.now();
  const who = [...r.typing].filter(([, t]) => t > now).map(([u]) => u).sort();
  for (const [u, t] of r.typing) if (t <= now) r.typing.delete(u);
  const el = $("typing");
  if (!who.length) { el.textContent = ""; return; }
  el.textContent = who.length === 1 ? `${who[0]} is typing…` : (who.length < 4 ? `${who.join(", ")} are typing…` : "Several people are typing…");
}
setInterval(() => { const r = rooms.get(active); if (r?.typing.size) schedule(); }, 1000);

function renderPeople(r) {
  const ul = $("people-list");
  const online = r.online || new Set();
  const people = new Set([...(r.members || []), ...online]);
  if (me) people.add(me);
  const sorted = [...people].sort((a, b) => (online.has(b) - online.has(a)) || a.localeCompare(b));
  ul.replaceChildren(...sorted.map((u) => {
    const li = document.createElement("li");
    li.className = "person" + (online.has(u) ? " is-online" : "");
    li.dataset.user = u;
    const av = document.createElement("span");
    av.className = "avatar";
    av.setAttribute("aria-hidden", "true");
    setAvatar(av, u);
    const name = document.createElement("span");
    name.textContent = u + (u === me ? " (you)" : "");
    const dot = document.createElement("span");
    dot.className = "dot " + (online.has(u) ? "online" : "offline");
    dot.setAttribute("aria-label", online.has(u) ? "online" : "offline");
    li.append(av, name, dot);
    return li;
  }));
}

// ---------- dialogs, banner, toasts ----------

$("new-room").addEventListener("click", () => {
  $("room-error").textContent = "";
  $("room-form").reset();
  $("room-dialog").showModal();
  $("room-name").focus();
});
$("room-cancel").addEventListener("click", () => $("room-dialog").close());
$("room-name").addEventListener("input", () => {
  if (!$("room-id").dataset.touched) $("room-id").value = slug($("room-name").value);
});
$("room-id").addEventListener("input", () => { $("room-id").dataset.touched = "1"; });
$("room-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("room-name").value.trim();
  const id = $("room-id").value.trim() || slug(name);
  if (!validRoomId(id)) { $("room-error").textContent = "Room ids are 1-64 of a-z, 0-9, - and _."; return; }
  try {
    await api.createRoom({ id, name: name || id, private: $("room-private").checked });
    $("room-dialog").close();
    delete $("room-id").dataset.touched;
    await refreshRooms(false);
    openRoom(id);
  } catch (e) {
    $("room-error").textContent = e.code === "conflict" ? "That id is taken: pick another, or join it below." : e.message;
  }
});
$("join-go").addEventListener("click", () => joinById());
$("join-id").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); joinById(); } });
async function joinById() {
  const id = $("join-id").value.trim();
  if (!validRoomId(id)) { $("room-error").textContent = "Room ids are 1-64 of a-z, 0-9, - and _."; return; }
  let r = rooms.get(id);
  if (!r) {
    try { r = newRoomView(await api.room(id)); rooms.set(id, r); } catch (e) { $("room-error").textContent = e.code === "not_found" ? "No such room." : e.message; return; }
  }
  $("room-dialog").close();
  openRoom(id);
}

$("invite").addEventListener("click", () => {
  const r = rooms.get(active);
  if (!r) return;
  $("invite-room").textContent = r.name;
  $("invite-error").textContent = "";
  $("invite-form").reset();
  $("invite-dialog").showModal();
  $("invite-user").focus();
});
$("invite-cancel").addEventListener("click", () => $("invite-dialog").close());
$("invite-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("invite-user").value.trim();
  try {
    await client.invite(active, user);
    $("invite-dialog").close();
    toast(`Invited ${user}.`);
    const r = rooms.get(active);
    if (r) fetchMembers(r);
  } catch (e) {
    $("invite-error").textContent = e.message;
  }
});

$("people-toggle").addEventListener("click", () => setPeople(!document.body.classList.contains("show-people")));
$("people-close").addEventListener("click", () => setPeople(false));
function setPeople(on) {
  document.body.classList.toggle("show-people", on);
  $("people-toggle").setAttribute("aria-expanded", String(on));
}
$("back").addEventListener("click", () => { document.body.classList.remove("in-room"); });
$("banner-retry").addEventListener("click", () => client?.reconnectNow());
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && document.body.classList.contains("show-people")) setPeople(false);
});

function showBanner(kind, text, hideAfter, retry = false) {
  clearTimeout(bannerTimer);
  const b = $("banner");
  b.className = `banner ${kind}`;
  b.dataset.kind = kind;
  $("banner-text").textContent = text;
  $("banner-retry").hidden = !retry;
  b.hidden = false;
  if (hideAfter) bannerTimer = setTimeout(hideBanner, hideAfter);
}
function hideBanner() { $("banner").hidden = true; }

let toastTimer = 0;
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
}

// ---------- small helpers ----------

function setAvatar(el, name) {
  el.textContent = (name || "?").slice(0, 1).toUpperCase();
  let h = 0;
  for (const c of name || "") h = (h * 31 + c.codePointAt(0)) >>> 0;
  el.style.setProperty("--hue", String(h % 360));
}
function timeOf(ts) {
  const d = new Date(ts);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function secs(ms) { return `${Math.max(1, Math.round(ms / 1000))}s`; }
function plural(n, w) { return n === 1 ? w : w + "s"; }
function slug(s) { return s.toLowerCase().normalize("NFKD").replace(/[^a-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64); }
function autosize(ta) { ta.style.height = "auto"; ta.style.height = Math.min(ta.scrollHeight, 160) + "px"; }

start();
