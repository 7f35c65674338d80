// Forge's client runtime, written by `forge generate ts`: calls over `POST /rpc/{name}`, live
// queries and job watches over `GET /ws`. It needs nothing but the platform's `fetch` and
// `WebSocket` (a browser, Deno, Bun, or Node 22+; Node 20 with --experimental-websocket).
// Do not edit: `forge generate ts` writes it again.

/** A failed call: `problem` is the RFC 7807 document the server answered. */
export class ForgeError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || 'request failed');
    this.name = 'ForgeError';
    this.problem = problem;
    this.status = problem.status;
    this.type = problem.type;
  }
}

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10000;

/** One connection to a Forge application. */
export class ForgeClient {
  constructor(options = {}) {
    this.url = undefined;
    this.token = undefined;
    this.socket = null;
    this.open = false;
    this.closedByUser = false;
    this.retryMs = RECONNECT_MIN_MS;
    this.retryTimer = null;
    this.nextId = 1;
    // Subscriptions and watches by id: what to send again after a reconnect.
    this.live = new Map();
    this.listeners = new Set();
    this.configure(options);
  }

  /** Sets the base URL, the credentials and, for runtimes without them, `fetch` and `WebSocket`. */
  configure(options = {}) {
    if ('url' in options) this.url = options.url;
    if ('token' in options) this.token = options.token;
    if (options.fetch) this.fetchImpl = options.fetch;
    if (options.WebSocket) this.WebSocketImpl = options.WebSocket;
    if (this.socket && ('url' in options || 'token' in options)) this.reconnect();
    return this;
  }

  baseUrl() {
    if (this.url) return String(this.url).replace(/\/+$/, '');
    if (globalThis.location && globalThis.location.origin && globalThis.location.origin !== 'null') {
      return globalThis.location.origin;
    }
    return 'http://127.0.0.1:8080';
  }

  async currentToken() {
    const token = typeof this.token === 'function' ? await this.token() : this.token;
    return token || undefined;
  }

  /** A callable reference to function `name` of `kind`, for `api.query.x(args)` and `subscribe`. */
  ref(kind, name) {
    const call = (args) => this.call(name, args);
    Object.defineProperty(call, 'kind', { value: kind, enumerable: true });
    Object.defineProperty(call, 'functionName', { value: name, enumerable: true });
    Object.defineProperty(call, 'client', { value: this });
    return call;
  }

  /** Calls function `name` with `args` over `POST /rpc/{name}`; rejects with a `ForgeError`. */
  async call(name, args) {
    const headers = { 'content-type': 'application/json', accept: 'application/json' };
    const token = await this.currentToken();
    if (token) headers.authorization = `Bearer ${token}`;
    const doFetch = this.fetchImpl || globalThis.fetch;
    let response;
    try {
      response = await doFetch(`${this.baseUrl()}/rpc/${encodeURIComponent(name)}`, {
        method: 'POST',
        headers,
        body: JSON.stringify(args === undefined ? null : args),
      });
    } catch (e) {
      throw new ForgeError({ type: 'urn:forge:problem:network', title: 'Network error', status: 0, detail: String(e) });
    }
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (response.ok && body && typeof body === 'object' && 'data' in body) return body.data;
    if (body && typeof body === 'object' && typeof body.status === 'number') throw new ForgeError(body);
    throw new ForgeError({ type: 'about:blank', title: response.statusText, status: response.status, detail: text });
  }

  /** Runs `query` with `args` now and whenever its result changes; returns a function that stops it. */
  subscribe(query, args, onData, onError) {
    if (!query || query.kind !== 'query') throw new TypeError('subscribe takes a query, e.g. api.query.listNotes');
    const id = `s${this.nextId++}`;
    const entry = {
      message: { type: 'subscribe', id, query: query.functionName, args: args === undefined ? null : args },
      onData,
      onError,
      last: undefined,
    };
    this.live.set(id, entry);
    this.send(entry.message);
    return () => this.stop(id);
  }

  /** Follows job `id` (its state, attempt, progress, output, last error); returns a function that stops it. */
  watchJob(job, onJob, onError) {
    const id = `w${this.nextId++}`;
    const entry = { message: { type: 'watch', id, job: Number(job) }, onJob, onError, cursor: undefined };
    this.live.set(id, entry);
    this.send(entry.message);
    return () => this.stop(id);
  }

  /** Follows workflow run `id`: the run, its steps in order and the events sent to it (operators only). */
  watchWorkflow(id, onRun, onError) {
    return this.subscribe({ kind: 'query', functionName: 'forge:workflow' }, { id: Number(id) }, onRun, onError);
  }

  /** Follows every queue's depth by state and its pause (operators only). */
  watchQueues(onQueues, onError) {
    return this.subscribe({ kind: 'query', functionName: 'forge:queues' }, null, onQueues, onError);
  }

  /** Called with `true` when the WebSocket opens and `false` when it drops; returns a function that removes it. */
  onConnectionChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Closes the WebSocket and forgets every subscription. */
  close() {
    this.closedByUser = true;
    this.live.clear();
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this.open = false;
  }

  stop(id) {
    if (!this.live.delete(id)) return;
    if (this.open) this.socket.send(JSON.stringify({ type: 'unsubscribe', id }));
    if (this.live.size === 0 && this.socket) {
      // Nothing left to follow: close, and open again with the next subscription.
      this.closedByUser = true;
      this.socket.close(1000);
      this.socket = null;
      this.open = false;
    }
  }

  send(message) {
    if (this.open) {
      this.socket.send(JSON.stringify(message));
    } else if (!this.socket) {
      this.connect();
    }
  }

  connect() {
    const Socket = this.WebSocketImpl || globalThis.WebSocket;
    if (!Socket) throw new Error('no WebSocket in this runtime: pass one with client.configure({ WebSocket })');
    clearTimeout(this.retryTimer);
    this.closedByUser = false;
    const url = `${this.baseUrl().replace(/^http/, 'ws')}/ws`;
    const socket = new Socket(url);
    this.socket = socket;
    socket.onopen = async () => {
      if (this.socket !== socket) return;
      const token = await this.currentToken();
      if (this.socket !== socket) return;
      this.open = true;
      this.retryMs = RECONNECT_MIN_MS;
      if (token) socket.send(JSON.stringify({ type: 'auth', token }));
      for (const entry of this.live.values()) {
        const message = entry.cursor ? { ...entry.message, cursor: entry.cursor } : entry.message;
        socket.send(JSON.stringify(message));
      }
      for (const listener of this.listeners) listener(true);
    };
    socket.onmessage = (event) => {
      if (this.socket === socket) this.receive(event.data);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      const wasOpen = this.open;
      this.socket = null;
      this.open = false;
      if (wasOpen) for (const listener of this.listeners) listener(false);
      if (!this.closedByUser && this.live.size > 0) {
        this.retryTimer = setTimeout(() => this.connect(), this.retryMs * (0.5 + Math.random() / 2));
        this.retryMs = Math.min(this.retryMs * 2, RECONNECT_MAX_MS);
      }
    };
  }

  reconnect() {
    const socket = this.socket;
    this.socket = null;
    this.open = false;
    if (socket) socket.close(1000);
    if (this.live.size > 0) this.connect();
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const entry = message.id === undefined ? undefined : this.live.get(message.id);
    switch (message.type) {
      case 'data': {
        if (!entry) return;
        // After a reconnect the server sends the current result again: pass it on only if it differs.
        const serialized = JSON.stringify(message.data);
        if (serialized === entry.last) return;
        entry.last = serialized;
        entry.onData(message.data);
        return;
      }
      case 'job': {
        if (!entry) return;
        entry.cursor = message.cursor;
        entry.onJob(message.job);
        return;
      }
      case 'error': {
        const error = new ForgeError(message.error);
        if (!entry) return;
        // Refused at the start (never answered), the subscription has ended on the server.
        const answered = entry.last !== undefined || entry.cursor !== undefined;
        if (!answered || message.error.status === 404) this.live.delete(message.id);
        if (entry.onError) entry.onError(error);
        return;
      }
      default:
        return;
    }
  }
}
