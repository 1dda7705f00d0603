// The WebSocket session with the server: identify (with the token when the
// server needs one), resume with `after_seq` after a drop, requests with ids.
//
// States (seed 000): `connecting` → `connected`; a drop → `reconnecting`
// (backoff 0.25 s doubling to 5 s); after five failed tries, or when the
// browser is offline, `offline` (still retrying every 5 s); a refused token
// (close 1008) → `offline` until a token is given.

/** @typedef {import('../../../../protocol/typescript/protocol').ClientMessage} ClientMessage */
/** @typedef {import('../../../../protocol/typescript/protocol').ServerMessage} ServerMessage */

export const PROTOCOL_VERSION = '1.0.0';
const TOKEN_KEY = 'runner-token';

/** The token for this tab, kept in sessionStorage only. */
export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives only in this page */ }
}

export class Connection {
  /**
   * @param {object} options
   * @param {(message: ServerMessage) => void} options.onMessage
   * @param {(state: string, detail?: string) => void} options.onState
   * @param {() => number} options.lastSeq the last event number applied (0: none)
   * @param {(why: string) => void} options.onNeedToken
   */
  constructor({ onMessage, onState, lastSeq, onNeedToken }) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.lastSeq = lastSeq;
    this.onNeedToken = onNeedToken;
    this.url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    this.state = 'connecting';
    this.failures = 0;
    this.nextId = 1;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: number}>} */
    this.pending = new Map();
    this.ws = null;
    this.timer = 0;
    this.connects = 0;
    window.addEventListener('online', () => { if (this.state !== 'connected') this.retryNow(); });
  }

  setState(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  connect() {
    clearTimeout(this.timer);
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.connects += 1;
    ws.addEventListener('open', () => {
      const after = this.lastSeq();
      /** @type {ClientMessage} */
      const identify = {
        type: 'identify',
        protocol_version: PROTOCOL_VERSION,
        client: { kind: 'dashboard', name: 'runner dashboard', user_agent: navigator.userAgent },
      };
      const secret = token();
      if (secret) identify.token = secret;
      if (after > 0) identify.after_seq = after;
      ws.send(JSON.stringify(identify));
    });
    ws.addEventListener('message', (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === 'identified') {
        this.failures = 0;
        this.setState('connected');
      }
      if (message.seq === undefined && message.id !== undefined && message.id !== null) {
        const waiting = this.pending.get(String(message.id));
        if (waiting) {
          this.pending.delete(String(message.id));
          clearTimeout(waiting.timer);
          if (message.type === 'error') waiting.reject(new RequestError(message));
          else waiting.resolve(message);
        }
      }
      this.onMessage(message);
    });
    ws.addEventListener('close', (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [id, waiting] of this.pending) {
        clearTimeout(waiting.timer);
        waiting.reject(new Error(`the connection closed before request ${id} was answered`));
      }
      this.pending.clear();
      if (event.code === 1008) {
        this.setState('offline', event.reason || 'the server refused the token');
        this.onNeedToken(event.reason || 'the server needs a token');
        return;
      }
      this.failures += 1;
      const offline = this.failures > 5 || navigator.onLine === false;
      this.setState(offline ? 'offline' : 'reconnecting', event.reason || `closed (${event.code})`);
      const delay = Math.min(5000, 250 * 2 ** (this.failures - 1));
      this.timer = setTimeout(() => this.connect(), delay * (0.8 + Math.random() * 0.4));
    });
  }

  /** Reconnects at once (after a token was given, or the browser came online). */
  retryNow() {
    clearTimeout(this.timer);
    if (this.ws) { this.ws.close(); this.ws = null; }
    this.setState('reconnecting');
    this.connect();
  }

  /**
   * Sends a request with an id; resolves with its answer, rejects with the
   * server's `error` (a RequestError with code and message).
   * @param {Omit<ClientMessage, 'id'>} body
   */
  request(body) {
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== 'connected') {
        reject(new Error(`not connected (${this.state}); try again once connected`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer to request ${id} within 15 s`));
      }, 15_000);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, ...body }));
    }).then((answer) => ({ id, answer }), (err) => { err.requestId = id; throw err; });
  }
}

export class RequestError extends Error {
  constructor(message) {
    super(`${message.code}: ${message.message}`);
    this.code = message.code;
  }
}
