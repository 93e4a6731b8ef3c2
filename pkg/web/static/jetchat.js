// jetchat.js: the browser SDK for jetchat's WebSocket protocol v1 and REST API.
//
// An ES module with no dependencies and no build step. It does in the browser
// what pkg/client does in Go: it keeps one WebSocket session alive across
// network cuts (reconnect with exponential backoff and full jitter), resumes
// every joined room from the last seq it delivered, checks each room's
// seq/prev chain (a gap is repaired by unsubscribe + join with since), and
// resends every unacknowledged action under its original id, so a retried send
// is stored and shown once. Positions and the unacknowledged outbox are kept
// in sessionStorage, so a page reload resumes too.
//
//   import { devLogin, Client } from "/jetchat.js";
//   const { token } = await devLogin("", "alice");
//   const chat = new Client({ token });
//   chat.on("event", (ev) => console.log(ev.seq, ev.author, ev.type, ev.text));
//   await chat.connect();
//   await chat.join("general", { limit: 50 });
//   await chat.send("general", "hello");   // resolves with the ack once stored

/**
 * A stored event, as the server delivers it.
 * @typedef {Object} ChatEvent
 * @property {string} id        client-chosen id (idempotency key)
 * @property {string} type      message.sent | message.edited | message.deleted | reaction.added |
 *                              reaction.removed | member.joined | member.left | room.created | read.moved | invalid
 * @property {string} room
 * @property {string} author
 * @property {string} ts        RFC 3339 server time
 * @property {number} seq       stream position
 * @property {number} prev      seq of the room's previous event (0 for the first)
 * @property {string} [text]
 * @property {number} [target]
 * @property {string} [emoji]
 * @property {string} [user]
 * @property {string} [name]
 * @property {boolean} [private]
 */

/**
 * A message from history (current state: edits applied, deletions as tombstones).
 * @typedef {Object} Message
 * @property {string} room
 * @property {number} seq
 * @property {string} id
 * @property {string} author
 * @property {string} ts
 * @property {string} text
 * @property {boolean} [edited]
 * @property {string} [edited_at]
 * @property {boolean} [deleted]
 * @property {{emoji: string, users: string[]}[]} [reactions]
 */

/**
 * @typedef {Object} Ack
 * @property {string} room
 * @property {string} id
 * @property {number} seq
 * @property {boolean} dup    the id had been stored before; seq is the original's
 * @property {string} type    the action's frame type (send, edit, ...)
 */

/**
 * The answer to a join, as emitted on "joined".
 * @typedef {Object} Joined
 * @property {string} room
 * @property {number} head       the room's position when it went live
 * @property {number} replayed   events replayed before joined
 * @property {number} replayedMessages  message.sent events among them
 * @property {boolean} recovered false: since was older than the log keeps; reload history
 * @property {boolean} resumed   the join asked for since (reconnect, reload, repair)
 * @property {number} [since]    the position it resumed from
 * @property {Message[]} [messages] the latest page (join with limit, first visit)
 * @property {string[]} [online] users present in the room (when the server sends it)
 * @property {number} [read]     your read marker (when the server sends it)
 * @property {number} [unread]   messages after your read marker (when the server sends it)
 */

/**
 * An action still waiting for its ack (it is resent after every reconnect).
 * @typedef {Object} PendingAction
 * @property {string} type
 * @property {string} room
 * @property {string} id
 * @property {string} [text]
 * @property {number} [target]
 * @property {string} [emoji]
 * @property {string} [user]
 */

/** Close codes 4000-4499 ask the client to reconnect; 4500-4999 not to. */
export const CloseCodes = Object.freeze({
  ShuttingDown: 4000, SlowReader: 4001, Internal: 4002, NoHello: 4003, NoPong: 4004,
  Unauthorized: 4500, ProtocolViolation: 4501, TooManyConnections: 4502, Flood: 4503,
});

/** Error codes the server may answer with (the `code` of an error frame). */
export const ErrorCodes = Object.freeze({
  BadRequest: "bad_request", UnknownFrame: "unknown_frame", Unauthorized: "unauthorized",
  Forbidden: "forbidden", NotFound: "not_found", NotJoined: "not_joined", Conflict: "conflict",
  TooLarge: "too_large", RateLimited: "rate_limited", Limit: "limit", Unavailable: "unavailable",
  Internal: "internal",
});

/** An error answered by the server (WebSocket error frame or REST error body). */
export class ChatError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {Object} [extra] room, id, ref, status, retryAfterMs
   */
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = "ChatError";
    /** @type {string} */ this.code = code;
    /** @type {string|undefined} */ this.room = extra.room;
    /** @type {string|undefined} */ this.id = extra.id;
    /** @type {number|undefined} */ this.status = extra.status;
    /** @type {number|undefined} */ this.retryAfterMs = extra.retryAfterMs;
  }
}

const ACTIONS = new Set(["send", "edit", "delete", "react", "unreact", "read", "create", "invite", "leave"]);
// Actions that need the room joined on the connection before they are sent.
const NEEDS_JOIN = new Set(["send", "edit", "delete", "react", "unreact", "read"]);
const RETRYABLE = new Set(["rate_limited", "unavailable", "internal"]);
const ROOM_RE = /^[a-z0-9_-]{1,64}$/;

/** A fresh idempotency id: a UUID (crypto.randomUUID, or getRandomValues outside secure contexts). */
export function newId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Reports whether s is a valid room id (1-64 bytes of a-z, 0-9, -, _). */
export function validRoomId(s) { return typeof s === "string" && ROOM_RE.test(s); }

/**
 * The WebSocket URL for a server's base URL ("" or a path: the page's own host).
 * @param {string} [baseURL]
 */
export function wsURL(baseURL = "") {
  const u = new URL(baseURL || "/", globalThis.location?.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.pathname = u.pathname.replace(/\/?$/, "/ws");
  u.search = "";
  u.hash = "";
  return u.toString();
}

/** The subject (user) of a JWT, read without verifying it; "" if unreadable. */
export function tokenSubject(token) {
  try {
    const p = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent([...atob(p)].map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    return String(JSON.parse(json).sub || "");
  } catch { return ""; }
}

/**
 * Dev mode only: a token for any name. POST /api/v1/dev/login.
 * @param {string} baseURL  "" for the page's own server
 * @param {string} name
 * @returns {Promise<{token: string, user: string}>}
 */
export async function devLogin(baseURL, name) {
  return request(baseURL, "", "POST", "/api/v1/dev/login", { name });
}

async function request(baseURL, token, method, path, body, headers = {}) {
  const h = { Accept: "application/json", ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const res = await fetch((baseURL || "").replace(/\/$/, "") + path, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch { /* empty or not JSON */ }
  if (!res.ok) {
    throw new ChatError(data?.code || `http_${res.status}`, data?.message || res.statusText, { status: res.status });
  }
  return data;
}

/**
 * The REST API (/api/v1) with a bearer token.
 */
export class Api {
  /** @param {{baseURL?: string, token: string}} opts */
  constructor({ baseURL = "", token }) {
    this.baseURL = baseURL;
    this.token = token;
  }
  /** @private */
  req(method, path, body, headers) { return request(this.baseURL, this.token, method, path, body, headers); }
  /**
   * Public rooms and your private ones. Newer servers add members, last_activity,
   * last {seq, author, text, ts, deleted}, read and unread to each.
   * @returns {Promise<Object[]>}
   */
  async rooms() { return (await this.req("GET", "/api/v1/rooms")).rooms || []; }
  /** @param {string} room */
  room(room) { return this.req("GET", `/api/v1/rooms/${encodeURIComponent(room)}`); }
  /**
   * Creates a room; retried with the same idempotencyKey it is created once.
   * @param {{id: string, name?: string, private?: boolean}} r
   * @param {string} [idempotencyKey]
   */
  createRoom(r, idempotencyKey = newId()) {
    return this.req("POST", "/api/v1/rooms", { id: r.id, name: r.name || r.id, private: !!r.private },
      { "Idempotency-Key": idempotencyKey });
  }
  /** @returns {Promise<{user: string, joined: string}[]>} */
  async members(room) { return (await this.req("GET", `/api/v1/rooms/${encodeURIComponent(room)}/members`)).members || []; }
  /** Invites user into a private room (its creator only). */
  invite(room, user, idempotencyKey = newId()) {
    return this.req("POST", `/api/v1/rooms/${encodeURIComponent(room)}/members`, { user }, { "Idempotency-Key": idempotencyKey });
  }
  /**
   * A page of history, oldest first.
   * @param {string} room
   * @param {{before?: number, after?: number, limit?: number}} [page]
   * @returns {Promise<Message[]>}
   */
  async messages(room, page = {}) {
    const q = new URLSearchParams();
    for (const k of ["before", "after", "limit"]) if (page[k]) q.set(k, String(page[k]));
    const s = q.toString();
    return (await this.req("GET", `/api/v1/rooms/${encodeURIComponent(room)}/messages${s ? "?" + s : ""}`)).messages || [];
  }
  /**
   * Who is online in a room (newer servers; null when the server lacks it).
   * @returns {Promise<string[]|null>}
   */
  async presence(room) {
    try {
      return (await this.req("GET", `/api/v1/rooms/${encodeURIComponent(room)}/presence`)).online || [];
    } catch (e) {
      if (e instanceof ChatError && e.status === 404 && e.code !== "not_found") return null;
      throw e;
    }
  }
}

/** Exponential backoff with full jitter: a random delay in [0, min(max, base*2^attempt)]. */
export function backoff(base, max, attempt) {
  const d = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(Math.random() * d);
}

/**
 * A resumable session with a jetchat server.
 *
 * Events (subscribe with on(name, fn), which returns a function that unsubscribes):
 * - "state"    {state, ...}: connecting | connected | reconnecting {attempt, delay, code, reason} |
 *              resumed {replayed, replayedMessages, rooms: {room: n}} | closed {code, reason, error}
 * - "welcome"  {user, node}
 * - "event"    ChatEvent: every event of each joined room once, in order (chain-checked)
 * - "joined"   Joined
 * - "left"     {room}
 * - "presence" {room, user, online}
 * - "typing"   {room, user}
 * - "ack"      Ack (also for actions restored from sessionStorage after a reload)
 * - "outbox"   PendingAction[]: the unacknowledged actions, after every change
 * - "error"    ChatError: final action errors, chain breaks (code "chain"), lost rooms
 */
export class Client {
  /**
   * @param {Object} opts
   * @param {string} [opts.url]       ws:// URL of /ws; default: this page's server
   * @param {string} [opts.token]     JWT sent in hello
   * @param {() => (string|Promise<string>)} [opts.tokenFn] called before each (re)connect instead of token
   * @param {number} [opts.minBackoff] ms, default 100
   * @param {number} [opts.maxBackoff] ms, default 5000
   * @param {Storage|null} [opts.storage] where positions and the outbox persist; default sessionStorage; null: nowhere
   * @param {string} [opts.storageKey] default "jetchat:" + url + ":" + the token's subject
   * @param {number} [opts.pingInterval] ms between client pings (dead-connection check), default 20000
   * @param {number} [opts.typingInterval] ms: typing() sends at most this often per room, default 2000
   * @param {typeof WebSocket} [opts.WebSocket]
   */
  constructor(opts = {}) {
    this.opts = {
      url: opts.url || wsURL(""), token: opts.token || "", tokenFn: opts.tokenFn,
      minBackoff: opts.minBackoff ?? 100, maxBackoff: opts.maxBackoff ?? 5000,
      pingInterval: opts.pingInterval ?? 20000, typingInterval: opts.typingInterval ?? 2000,
      WebSocket: opts.WebSocket || globalThis.WebSocket,
    };
    this.opts.maxBackoff = Math.max(this.opts.maxBackoff, this.opts.minBackoff);
    this.storage = opts.storage === undefined ? safeSessionStorage() : opts.storage;
    this.storageKey = opts.storageKey || `jetchat:${this.opts.url}:${tokenSubject(this.opts.token)}`;

    /** @private */ this.handlers = new Map();
    /** @private */ this.ws = null;          // the connection that said welcome
    /** @private */ this.dialing = null;     // a connection before its welcome
    /** @private */ this.gen = 0;            // counts welcomed connections
    /** @private */ this.attempt = 0;
    /** @private */ this.timer = 0;
    /** @private */ this.pingTimer = 0;
    /** @private */ this.pongDue = 0;
    /** @private */ this.refs = 0;
    /** @private */ this.refPrefix = Math.random().toString(36).slice(2, 6) + ":";
    /** @private @type {Map<string, RoomState>} */ this.rooms = new Map();
    /** @private @type {Map<string, OutboxEntry>} */ this.outbox = new Map(); // by ref
    /** @private */ this.requests = new Map(); // history and unsubscribe, by ref
    /** @private */ this.lastTyping = new Map();
    /** @private */ this.resumeBatch = null;
    /** @private */ this.closed = false;
    /** @private */ this.started = false;
    /** @private */ this.connectWaiters = [];
    this._state = "idle";
    this._user = "";
    this._node = "";
    this._reconnects = 0;

    const saved = this.load();
    /** @private @type {Map<string, number>} positions restored from storage, used by the next join of each room */
    this.saved = new Map(Object.entries(saved.rooms || {}).filter(([, v]) => Number.isSafeInteger(v)));
    /** @private */ this.reads = new Map(Object.entries(saved.reads || {}));
    for (const f of saved.outbox || []) {
      if (f && ACTIONS.has(f.type) && typeof f.id === "string") this.addEntry({ ...f }, null);
    }

    /** @private */ this.onOnline = () => { if (!this.ws && !this.dialing && this.started && !this.closed) this.reconnectNow(); };
    globalThis.addEventListener?.("online", this.onOnline);
  }

  /** The connection state: idle | connecting | connected | reconnecting | resumed | closed. */
  get state() { return this._state; }
  /** The user the server authenticated ("" before the first welcome). */
  get user() { return this._user; }
  /** The node this connection is on. */
  get node() { return this._node; }
  /** How many times the client has reconnected. */
  get reconnects() { return this._reconnects; }
  /** Whether a connection is up (welcomed). */
  get connected() { return this.ws !== null; }

  /**
   * Subscribes fn to an event; returns a function that unsubscribes it.
   * @param {string} name
   * @param {(detail: any) => void} fn
   */
  on(name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(fn);
    return () => this.off(name, fn);
  }
  /** Unsubscribes fn. */
  off(name, fn) { this.handlers.get(name)?.delete(fn); }
  /** @private */
  emit(name, detail) {
    for (const fn of [...(this.handlers.get(name) || [])]) {
      try { fn(detail); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  /**
   * Connects and resolves with the first welcome. A rejected token rejects with
   * ChatError unauthorized; a network failure keeps retrying with backoff.
   * @returns {Promise<{user: string, node: string}>}
   */
  connect() {
    if (this.closed) return Promise.reject(new ChatError("closed", "client closed"));
    if (this.ws) return Promise.resolve({ user: this._user, node: this._node });
    const p = new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (!this.started) {
      this.started = true;
      this.setState("connecting");
      this.dial();
    }
    return p;
  }

  /** Closes the connection (1000) and stops reconnecting. Pending calls reject. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    globalThis.removeEventListener?.("online", this.onOnline);
    const err = new ChatError("closed", "client closed");
    for (const ws of [this.ws, this.dialing]) if (ws) { detach(ws); try { ws.close(1000); } catch { /* already closed */ } }
    this.ws = this.dialing = null;
    this.failAll(err);
    this.setState("closed", { code: 1000, reason: "closed by the client" });
  }

  /**
   * Test hook: drops the connection abruptly, as a network cut would; the
   * client reconnects and resumes.
   */
  drop() {
    const ws = this.ws || this.dialing;
    if (!ws) return;
    this.lost(ws, 4999 /* not a server code: a local cut */, "dropped");
  }

  /** Skips the current backoff wait and reconnects now. */
  reconnectNow() {
    if (this.closed || this.ws || this.dialing) return;
    clearTimeout(this.timer);
    this.dial();
  }

  /**
   * Subscribes to a room. A room joined before (in this page, or in this tab
   * before a reload) is resumed from its position: every event after it is
   * replayed before "joined". Otherwise, with limit, joined.messages carries
   * the latest page of history and the events after it follow; without it,
   * the room is joined live at its head. With since, replays after since.
   * Joined rooms are rejoined on every reconnect.
   * @param {string} room
   * @param {{limit?: number, since?: number}} [opts]
   * @returns {Promise<Joined>}
   */
  join(room, opts = {}) {
    if (!validRoomId(room)) return Promise.reject(new ChatError("bad_request", `bad room id ${JSON.stringify(room)}`));
    if (this.closed) return Promise.reject(new ChatError("closed", "client closed"));
    let r = this.rooms.get(room);
    if (!r) {
      r = newRoom();
      const since = opts.since ?? this.saved.get(room);
      if (since !== undefined) { r.pos = since; r.live = true; r.restored = opts.since === undefined; }
      r.limit = opts.limit || 0;
      this.rooms.set(room, r);
    } else if (r.subscribed && !r.joinRef) {
      return Promise.resolve(r.lastJoined);
    }
    const p = new Promise((resolve, reject) => r.waiters.push({ resolve, reject }));
    if (this.ws && !r.joinRef) this.sendJoin(room, r);
    return p;
  }

  /**
   * Stops receiving a room's events on this connection; membership stays.
   * @param {string} room
   */
  unsubscribe(room) {
    const r = this.rooms.get(room);
    if (!r) return Promise.resolve();
    this.forget(room, new ChatError("not_joined", "unsubscribed while joining", { room }));
    if (!this.ws) return Promise.resolve();
    return this.request({ type: "unsubscribe", room }, true).catch((e) => { if (e.code !== "not_joined") throw e; });
  }

  /** Rooms joined (or being joined) by this client. */
  joinedRooms() { return [...this.rooms.keys()]; }
  /** The seq of the last event delivered in room (or its head), 0 if not joined. */
  position(room) { return this.rooms.get(room)?.pos || 0; }
  /** Users online in room, as far as the server has told (joined.online and presence frames). */
  online(room) { return [...(this.rooms.get(room)?.online || [])].sort(); }
  /** Your read marker in room as last known (joined.read, read.moved by you, or read() sent). */
  readMarker(room) { return this.reads.get(room) || 0; }

  /**
   * Any action frame (send, edit, delete, react, unreact, read, create,
   * invite, leave), under frame.id or a fresh one. Resolves with the ack;
   * retried with the same id after reconnects, rate_limited, unavailable and
   * internal errors; rejects with ChatError on a final error.
   * @param {Object} frame
   * @returns {Promise<Ack>}
   */
  act(frame) {
    if (this.closed) return Promise.reject(new ChatError("closed", "client closed"));
    if (!ACTIONS.has(frame.type)) return Promise.reject(new ChatError("bad_request", `${frame.type} is not an action`));
    const f = { ...frame, id: frame.id || newId() };
    delete f.ref;
    if (NEEDS_JOIN.has(f.type) && !this.rooms.has(f.room)) {
      return Promise.reject(new ChatError("not_joined", `join ${f.room} first`, { room: f.room, id: f.id }));
    }
    if (new TextEncoder().encode(JSON.stringify(f)).length > 64 * 1024) {
      return Promise.reject(new ChatError("too_large", "frame is over 64 KiB", { room: f.room, id: f.id }));
    }
    return new Promise((resolve, reject) => {
      const e = this.addEntry(f, { resolve, reject });
      this.save();
      this.emitOutbox();
      this.flushEntry(e);
    });
  }

  /**
   * Posts text; resolves with the ack once the log stored it.
   * @param {string} room
   * @param {string} text
   * @param {{id?: string}} [opts] id: choose the idempotency id (to show the message as pending under it)
   */
  send(room, text, opts = {}) {
    this.lastTyping.delete(room); // a message ends typing: the next keystroke says so again
    return this.act({ type: "send", room, text, id: opts.id });
  }
  /** Replaces the text of your message target (its seq). */
  edit(room, target, text, opts = {}) { return this.act({ type: "edit", room, target, text, id: opts.id }); }
  /** Deletes your message target. */
  delete(room, target, opts = {}) { return this.act({ type: "delete", room, target, id: opts.id }); }
  /** Adds your reaction emoji to message target. */
  react(room, target, emoji, opts = {}) { return this.act({ type: "react", room, target, emoji, id: opts.id }); }
  /** Removes your reaction emoji from message target. */
  unreact(room, target, emoji, opts = {}) { return this.act({ type: "unreact", room, target, emoji, id: opts.id }); }
  /**
   * Moves your read marker to target; a target at or before the marker sends
   * nothing and resolves with null.
   * @returns {Promise<Ack|null>}
   */
  read(room, target, opts = {}) {
    if (target <= this.readMarker(room)) return Promise.resolve(null);
    this.reads.set(room, target);
    this.save();
    return this.act({ type: "read", room, target, id: opts.id });
  }
  /** Creates a room over the WebSocket. */
  create(room, { name, private: priv = false, id } = {}) {
    return this.act({ type: "create", room, name: name || room, private: priv || undefined, id });
  }
  /** Invites user into a private room you created. */
  invite(room, user, opts = {}) { return this.act({ type: "invite", room, user, id: opts.id }); }
  /** Ends your membership of room (and unsubscribes). */
  leave(room, opts = {}) { return this.act({ type: "leave", room, id: opts.id }); }

  /**
   * Tells the room you are typing; sent at most once per typingInterval per
   * room, dropped while disconnected.
   */
  typing(room) {
    const r = this.rooms.get(room);
    const now = Date.now();
    if (!this.ws || !r?.subscribed || now - (this.lastTyping.get(room) || 0) < this.opts.typingInterval) return;
    this.lastTyping.set(room, now);
    this.write(this.ws, { type: "typing", room });
  }

  /**
   * A page of history over the WebSocket, oldest first. To scroll back, ask
   * before the oldest seq you show.
   * @param {string} room
   * @param {{before?: number, after?: number, limit?: number}} [page]
   * @returns {Promise<Message[]>}
   */
  async history(room, page = {}) {
    const f = { type: "history", room };
    for (const k of ["before", "after", "limit"]) if (page[k]) f[k] = page[k];
    const res = await this.request(f, false);
    return res.messages || [];
  }

  /** The unacknowledged actions, oldest first (optionally of one room). */
  pending(room) {
    return [...this.outbox.values()].sort((a, b) => a.n - b.n)
      .filter((e) => !room || e.frame.room === room).map((e) => ({ ...e.frame }));
  }

  // ---- internals ----

  /** @private */
  setState(state, detail = {}) {
    this._state = state;
    this.emit("state", { state, ...detail });
  }

  /** @private */
  nextRef() { return this.refPrefix + (++this.refs); }

  /** @private */
  addEntry(frame, promise) {
    const e = { n: ++this.refs, ref: "", frame, promise, sentOn: 0, timer: 0, attempt: 0 };
    e.ref = this.refPrefix + e.n;
    this.outbox.set(e.ref, e);
    return e;
  }

  /** @private sends an outbox entry if the connection and its room are ready. */
  flushEntry(e) {
    if (!this.ws || e.sentOn === this.gen || e.timer) return;
    if (NEEDS_JOIN.has(e.frame.type)) {
      const r = this.rooms.get(e.frame.room);
      if (!r || !r.subscribed) return; // sent once the room's joined arrives
    }
    e.sentOn = this.gen;
    this.write(this.ws, { ...e.frame, ref: e.ref });
  }

  /** @private sends every ready entry, oldest first. */
  flush(room) {
    for (const e of [...this.outbox.values()].sort((a, b) => a.n - b.n)) {
      if (!room || e.frame.room === room) this.flushEntry(e);
    }
  }

  /** @private a non-action request (history, unsubscribe), answered by ref. */
  request(frame, once) {
    return new Promise((resolve, reject) => {
      const ref = this.nextRef();
      const q = { frame: { ...frame, ref }, resolve, reject, once };
      this.requests.set(ref, q);
      if (this.ws) this.write(this.ws, q.frame);
    });
  }

  /** @private */
  emitOutbox() { this.emit("outbox", this.pending()); }

  /** @private */
  load() {
    if (!this.storage) return {};
    try { return JSON.parse(this.storage.getItem(this.storageKey) || "{}") || {}; } catch { return {}; }
  }

  /** @private persists positions, read markers and the outbox. */
  save() {
    if (!this.storage) return;
    const rooms = Object.fromEntries(this.saved);
    for (const [name, r] of this.rooms) if (r.live) rooms[name] = r.pos;
    const outbox = [...this.outbox.values()].sort((a, b) => a.n - b.n).map((e) => e.frame);
    try {
      this.storage.setItem(this.storageKey, JSON.stringify({ v: 1, rooms, reads: Object.fromEntries(this.reads), outbox }));
    } catch { /* storage full or denied: memory still holds it */ }
  }

  /** @private */
  async dial() {
    clearTimeout(this.timer);
    this.timer = 0;
    let token = this.opts.token;
    if (this.opts.tokenFn) {
      try { token = await this.opts.tokenFn(); } catch (e) { this.retryLater(0, String(e)); return; }
    }
    if (this.closed) return;
    let ws;
    try { ws = new this.opts.WebSocket(this.opts.url); } catch (e) { this.retryLater(0, String(e)); return; }
    this.dialing = ws;
    const helloTimer = setTimeout(() => this.lost(ws, 4003, "no welcome"), 10000);
    ws.onopen = () => this.write(ws, { type: "hello", ref: this.nextRef(), token });
    ws.onmessage = (m) => {
      if (typeof m.data !== "string") return;
      for (const line of m.data.split("\n")) {
        if (!line) continue;
        let f;
        try { f = JSON.parse(line); } catch { continue; }
        if (ws !== this.ws && ws !== this.dialing) return;
        if (ws === this.dialing) {
          if (f.type === "welcome") { clearTimeout(helloTimer); this.welcomed(ws, f); }
          else if (f.type === "error") { clearTimeout(helloTimer); this.helloFailed(ws, f); return; }
          continue;
        }
        this.handle(ws, f);
      }
    };
    ws.onclose = (ev) => { clearTimeout(helloTimer); this.lost(ws, ev.code, ev.reason); };
    ws.onerror = () => { /* onclose follows */ };
  }

  /** @private */
  helloFailed(ws, f) {
    detach(ws);
    try { ws.close(1000); } catch { /* closed */ }
    this.dialing = null;
    if (RETRYABLE.has(f.code)) { this.retryLater(0, f.message); return; }
    const err = new ChatError(f.code, f.message);
    this.stop(4500, f.message, err);
  }

  /** @private stops for good after a close code that forbids reconnecting. */
  stop(code, reason, err) {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    for (const w of this.connectWaiters.splice(0)) w.reject(err);
    this.failAll(err);
    this.emit("error", err);
    this.setState("closed", { code, reason, error: err });
  }

  /** @private */
  failAll(err) {
    for (const w of this.connectWaiters.splice(0)) w.reject(err);
    for (const r of this.rooms.values()) for (const w of r.waiters.splice(0)) w.reject(err);
    for (const e of this.outbox.values()) { clearTimeout(e.timer); e.promise?.reject(err); }
    for (const q of this.requests.values()) q.reject(err);
    this.requests.clear();
    // The outbox stays in storage: a new client in this tab resends it.
  }

  /** @private a connection said welcome: publish it, rejoin, resend. */
  welcomed(ws, f) {
    this.dialing = null;
    this.ws = ws;
    this.gen++;
    this.attempt = 0;
    this._user = f.user || "";
    this._node = f.node || "";
    const reconnect = this.gen > 1;
    if (reconnect) this._reconnects++;
    this.emit("welcome", { user: this._user, node: this._node });
    this.startPings(ws);
    this.resumeBatch = reconnect ? { waiting: new Set(), replayed: 0, replayedMessages: 0, rooms: {} } : null;
    const leaving = new Set([...this.outbox.values()].filter((e) => e.frame.type === "leave").map((e) => e.frame.room));
    for (const [name, r] of this.rooms) {
      r.subscribed = false;
      r.joinRef = "";
      r.repairing = r.needsRepair = false;
      if (leaving.has(name)) continue; // rejoining would make us a member again before the leave
      if (this.resumeBatch) this.resumeBatch.waiting.add(name);
      this.sendJoin(name, r);
    }
    for (const [ref, q] of this.requests) {
      if (q.once) { this.requests.delete(ref); q.resolve({ type: "left", room: q.frame.room }); continue; }
      this.write(ws, q.frame);
    }
    this.flush();
    if (!reconnect) {
      this.setState("connected", { user: this._user, node: this._node });
      for (const w of this.connectWaiters.splice(0)) w.resolve({ user: this._user, node: this._node });
    } else if (this.resumeBatch.waiting.size === 0) {
      this.finishResume();
    }
  }

  /** @private */
  finishResume() {
    const b = this.resumeBatch;
    this.resumeBatch = null;
    this.setState("resumed", { replayed: b.replayed, replayedMessages: b.replayedMessages, rooms: b.rooms, reconnects: this._reconnects });
  }

  /** @private */
  startPings(ws) {
    clearInterval(this.pingTimer);
    this.pongDue = 0;
    if (!this.opts.pingInterval) return;
    this.pingTimer = setInterval(() => {
      if (ws !== this.ws) return;
      if (this.pongDue && Date.now() > this.pongDue) { this.lost(ws, 4004, "no pong"); return; }
      if (!this.pongDue) this.pongDue = Date.now() + 10000;
      this.write(ws, { type: "ping", ref: this.nextRef() });
    }, this.opts.pingInterval);
  }

  /** @private a connection ended (closed by either side, or cut). */
  lost(ws, code, reason) {
    if (ws !== this.ws && ws !== this.dialing) return;
    detach(ws);
    try { ws.close(); } catch { /* closed */ }
    const wasUp = ws === this.ws;
    if (wasUp) { this.ws = null; clearInterval(this.pingTimer); }
    else this.dialing = null;
    for (const r of this.rooms.values()) { r.subscribed = false; r.joinRef = ""; }
    for (const e of this.outbox.values()) e.sentOn = 0;
    if (this.closed) return;
    if (code >= 4500 && code <= 4999 && code !== 4999) {
      this.stop(code, reason, new ChatError(code === 4500 ? "unauthorized" : "closed", reason || `closed with ${code}`));
      return;
    }
    this.retryLater(code, reason);
  }

  /** @private */
  retryLater(code, reason) {
    if (this.closed) return;
    const delay = backoff(this.opts.minBackoff, this.opts.maxBackoff, this.attempt);
    this.attempt++;
    this.setState(this.gen === 0 ? "connecting" : "reconnecting", { attempt: this.attempt, delay, code, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.dial(), delay);
  }

  /** @private */
  write(ws, f) {
    try { ws.send(JSON.stringify(f)); } catch { /* the close handler reconnects; pending frames are resent */ }
  }

  /** @private */
  sendJoin(name, r) {
    const ref = this.nextRef();
    r.joinRef = ref;
    r.replayedMessages = 0;
    const f = { type: "join", ref, room: name };
    if (r.live) { f.since = r.pos; r.resuming = true; }
    else { r.resuming = false; if (r.limit) { f.limit = r.limit; r.acceptFirst = true; } }
    r.sentSince = f.since;
    this.write(this.ws, f);
  }

  /** @private */
  handle(ws, f) {
    switch (f.type) {
      case "event": if (f.event) this.event(ws, f.event); break;
      case "joined": this.joined(ws, f); break;
      case "ack": this.ack(f); break;
      case "error": this.error(f); break;
      case "left": this.left(f); break;
      case "history": { const q = this.requests.get(f.ref); if (q) { this.requests.delete(f.ref); q.resolve(f); } break; }
      case "pong": this.pongDue = 0; break;
      case "typing": this.emit("typing", { room: f.room, user: f.user }); break;
      case "presence": {
        const r = this.rooms.get(f.room);
        if (r) { if (f.online) r.online.add(f.user); else r.online.delete(f.user); }
        this.emit("presence", { room: f.room, user: f.user, online: !!f.online });
        break;
      }
      default: break;
    }
  }

  /** @private the chain check: deliver, skip, or report and repair. */
  event(ws, e) {
    const r = this.rooms.get(e.room);
    if (!r) return;
    if (!r.live && r.acceptFirst && r.joinRef) { // a join with limit: the chain starts at the page's newest message
      r.pos = e.prev;
      r.live = true;
    }
    let v;
    if (!r.live) v = "skip";
    else if (r.repairing) v = e.prev !== r.pos || e.seq <= r.pos ? "skip" : "deliver";
    else if (e.seq <= r.pos) v = "duplicate";
    else if (e.prev !== r.pos) v = "gap";
    else v = "deliver";
    if (v === "deliver") {
      r.pos = e.seq;
      if (r.joinRef && e.type === "message.sent") r.replayedMessages++;
      if (e.type === "read.moved" && e.author === this._user) this.reads.set(e.room, Math.max(this.readMarker(e.room), e.target || 0));
      this.save();
      this.emit("event", e);
      return;
    }
    if (v === "skip") return;
    const last = r.pos;
    const err = new ChatError("chain", `${v} in room ${e.room}: at ${last}, got seq ${e.seq} prev ${e.prev}`, { room: e.room });
    err.seq = e.seq; err.prev = e.prev; err.last = last; err.duplicate = v === "duplicate";
    this.emit("error", err);
    if (v === "gap") {
      r.repairing = true;
      if (r.joinRef) { r.needsRepair = true; return; }
      this.repair(e.room, r);
    }
  }

  /** @private unsubscribe and join from the position: the server replays the gap. */
  repair(name, r) {
    r.repairing = true;
    this.write(this.ws, { type: "unsubscribe", ref: this.nextRef(), room: name });
    this.sendJoin(name, r);
  }

  /** @private */
  joined(ws, f) {
    const r = this.rooms.get(f.room);
    if (!r || f.ref !== r.joinRef) return;
    const recovered = f.recovered === undefined || f.recovered;
    const since = r.sentSince;
    r.subscribed = true;
    r.joinRef = "";
    r.failures = 0;
    r.acceptFirst = false;
    if (!r.live) { r.pos = f.head || 0; r.live = true; }
    else if (!recovered) r.pos = Math.max(r.pos, f.head || 0);
    if (!r.needsRepair) r.repairing = false;
    if (Array.isArray(f.online)) r.online = new Set(f.online);
    if (Number.isSafeInteger(f.read)) this.reads.set(f.room, Math.max(this.readMarker(f.room), f.read));
    this.saved.delete(f.room);
    this.save();
    /** @type {Joined} */
    const j = {
      room: f.room, head: f.head || 0, replayed: f.replayed || 0, replayedMessages: r.replayedMessages,
      recovered, resumed: since !== undefined, since, messages: f.messages,
      online: f.online, read: f.read, unread: f.unread, restored: !!r.restored,
    };
    r.restored = false;
    r.lastJoined = j;
    this.emit("joined", j);
    for (const w of r.waiters.splice(0)) w.resolve(j);
    if (!recovered) {
      this.emit("error", new ChatError("not_recovered", `room ${f.room} not recovered from ${since}: resumed at head ${f.head}; reload history`, { room: f.room }));
    }
    const b = this.resumeBatch;
    if (b && b.waiting.delete(f.room)) {
      b.replayed += j.replayed;
      b.replayedMessages += j.replayedMessages;
      b.rooms[f.room] = j.replayed;
      if (b.waiting.size === 0) this.finishResume();
    }
    if (r.needsRepair) { r.needsRepair = false; this.repair(f.room, r); }
    this.flush(f.room);
  }

  /** @private */
  ack(f) {
    const e = this.outbox.get(f.ref);
    if (!e) return;
    this.outbox.delete(f.ref);
    clearTimeout(e.timer);
    this.save();
    /** @type {Ack} */
    const a = { room: e.frame.room, id: e.frame.id, seq: f.seq || 0, dup: !!f.dup, type: e.frame.type, frame: { ...e.frame } };
    this.emit("ack", a);
    this.emitOutbox();
    e.promise?.resolve(a);
    if (e.frame.type === "leave") this.forget(e.frame.room, new ChatError("not_joined", "left the room", { room: e.frame.room }));
  }

  /** @private */
  left(f) {
    const q = this.requests.get(f.ref);
    if (q) { this.requests.delete(f.ref); q.resolve(f); }
    this.emit("left", { room: f.room });
  }

  /** @private */
  forget(name, err) {
    const r = this.rooms.get(name);
    if (!r) return;
    this.rooms.delete(name);
    this.saved.delete(name);
    for (const w of r.waiters.splice(0)) w.reject(err);
    this.save();
  }

  /** @private */
  error(f) {
    const err = new ChatError(f.code, f.message, { room: f.room, id: f.id, retryAfterMs: f.retry_after_ms });
    // A join in flight?
    const r = f.room ? this.rooms.get(f.room) : null;
    if (r && f.ref && f.ref === r.joinRef) {
      r.joinRef = "";
      if (RETRYABLE.has(f.code)) {
        const delay = f.retry_after_ms || backoff(this.opts.minBackoff, this.opts.maxBackoff, r.failures++);
        const gen = this.gen;
        setTimeout(() => { if (this.ws && this.gen === gen && this.rooms.get(f.room) === r && !r.joinRef) this.sendJoin(f.room, r); }, delay);
        return;
      }
      const lost = r.subscribed || r.lastJoined;
      this.forget(f.room, err);
      if (this.resumeBatch?.waiting.delete(f.room) && this.resumeBatch.waiting.size === 0) this.finishResume();
      if (lost) this.emit("error", err);
      return;
    }
    const e = f.ref ? this.outbox.get(f.ref) : null;
    if (e) {
      if (RETRYABLE.has(f.code) || (f.code === "not_joined" && this.rooms.has(e.frame.room))) {
        e.sentOn = 0;
        if (f.code === "not_joined") { const rr = this.rooms.get(e.frame.room); if (rr && !rr.joinRef) { rr.subscribed = false; this.sendJoin(e.frame.room, rr); } return; }
        const delay = f.retry_after_ms || backoff(this.opts.minBackoff, this.opts.maxBackoff, e.attempt);
        e.attempt++;
        e.timer = setTimeout(() => { e.timer = 0; this.flushEntry(e); }, delay);
        return;
      }
      this.outbox.delete(f.ref);
      this.save();
      err.frame = { ...e.frame };
      this.emitOutbox();
      this.emit("error", err);
      e.promise?.reject(err);
      return;
    }
    const q = f.ref ? this.requests.get(f.ref) : null;
    if (q) {
      if (RETRYABLE.has(f.code)) {
        setTimeout(() => { if (this.ws && this.requests.get(f.ref) === q) this.write(this.ws, q.frame); }, f.retry_after_ms || 500);
        return;
      }
      this.requests.delete(f.ref);
      q.reject(err);
      return;
    }
    this.emit("error", err);
  }
}

/**
 * @typedef {Object} RoomState
 * @property {number} pos
 * @property {boolean} live
 */
function newRoom() {
  return {
    pos: 0, live: false, limit: 0, joinRef: "", subscribed: false, repairing: false, needsRepair: false,
    acceptFirst: false, failures: 0, waiters: [], online: new Set(), replayedMessages: 0, resuming: false,
    sentSince: undefined, lastJoined: null, restored: false,
  };
}

/** @typedef {{n: number, ref: string, frame: Object, promise: ?{resolve: Function, reject: Function}, sentOn: number, timer: number, attempt: number}} OutboxEntry */

function detach(ws) { ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null; }

function safeSessionStorage() {
  try { return globalThis.sessionStorage || null; } catch { return null; }
}
