// @ts-check
/**
 * sanic-wsauth browser client: a WebSocket authenticated with one-time tickets.
 *
 * A dependency-free ES module; import it as it is:
 *
 *     import { connect } from "/static/wsauth.js";
 *     const conn = connect({
 *       tokenUrl: "/authenticate/token",
 *       url: "/ws",
 *       headers: () => ({ Authorization: `Bearer ${apiKey}` }),
 *       onMessage: (data) => console.log(data),
 *     });
 *     conn.send("hello");
 *     conn.close();
 *
 * Before every connect and reconnect the client POSTs to `tokenUrl` with the
 * app's credentials (a headers callback and/or cookies) and gets a fresh
 * ticket; a ticket is never reused. The ticket travels in the query string
 * (`?token=`) or as a `Sec-WebSocket-Protocol` entry `wsauth.ticket.<ticket>`
 * beside the app's real subprotocols.
 *
 * A browser reports a refused handshake only as close code 1006, exactly like
 * a network failure, so the client decides by the ticket endpoint's answer:
 * 401/403 there ends the connection with an "auth" error (no retry); network
 * failures and 5xx are retried with capped exponential backoff and full
 * jitter, up to `reconnect.maxRetries` consecutive failures.
 *
 * Connection age (server option WSAUTH_MAX_CONNECTION_AGE): a close with code
 * 4001 reconnects at once with a new ticket (a 4001 within a second of opening
 * counts as a failure, with backoff). When the ticket endpoint answers
 * `refresh: true`, the client sends a fresh ticket in-band at `refreshAt`
 * (80 %) of the age, `{"type":"wsauth.refresh","token":"..."}`, and swallows
 * the server's `{"type":"wsauth.refreshed",...}` answer.
 *
 * @module wsauth
 */

/** Close code the server sends when a connection reaches its maximum age. */
export const AGE_CLOSE_CODE = 4001;
/** Close code the server sends when an in-band refresh is refused. */
export const REFRESH_CLOSE_CODE = 4003;
/** `type` of the in-band refresh frame the client sends. */
export const REFRESH_TYPE = "wsauth.refresh";
/** `type` of the server's answer to a good refresh. */
export const REFRESHED_TYPE = "wsauth.refreshed";

/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} ConnectionState */
/** @typedef {"query" | "subprotocol"} Transport */
/** @typedef {"auth" | "http" | "network" | "protocol" | "closed" | "config"} ErrorKind */

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [initialDelay] Ceiling of the first retry's random delay, ms (500).
 * @property {number} [maxDelay] Cap of the delay ceiling, ms (30000).
 * @property {number} [factor] Growth of the ceiling per failure, >= 1 (2).
 * @property {number} [maxRetries] Consecutive failed retries before giving up, an integer
 *     >= 0 (10; Infinity: never).
 * @property {number} [stableAfter] A socket open this long (ms) resets the failure count (5000).
 *
 * The delays are finite numbers >= 0. A field left out, undefined or null takes its
 * default; any other invalid value makes connect() throw a TypeError.
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} tokenUrl The ticket endpoint (POST), e.g. "/authenticate/token".
 * @property {string} url The socket URL; relative, http(s) and ws(s) URLs are accepted.
 * @property {Transport} [transport] Where the ticket travels ("query").
 * @property {string[]} [protocols] The app's real subprotocols; the server must select one of
 *     them when any is offered (required for the "subprotocol" transport).
 * @property {HeadersInit | (() => HeadersInit | Promise<HeadersInit>)} [headers] Headers for the
 *     ticket request, or a callback called before every request (e.g. an Authorization header).
 * @property {RequestCredentials} [credentials] fetch credentials mode for cookies ("same-origin").
 * @property {string} [audience] Ask for a ticket bound to this audience.
 * @property {string} [audienceParam] Body field of the audience ("audience").
 * @property {ReconnectOptions | false} [reconnect] Backoff settings, or false to never retry
 *     after a failure (the server's 4001 age close still reconnects, unless it came within
 *     1 s of opening: that is a failure).
 * @property {boolean} [refresh] Refresh in-band when the server allows it (true).
 * @property {number} [refreshAt] Fraction of the connection age at which to refresh (0.8).
 * @property {number} [ticketTimeout] Abort a ticket request after this many ms, the headers
 *     callback included (10000).
 * @property {number} [openTimeout] Give up on a handshake after this many ms (10000).
 * @property {BinaryType} [binaryType] The socket's binaryType ("blob").
 * @property {string} [queryParam] Query parameter of the ticket ("token").
 * @property {string} [protocolPrefix] Subprotocol prefix of the ticket ("wsauth.ticket.").
 * @property {(info: OpenInfo) => void} [onOpen] The socket opened.
 * @property {(data: any, event: MessageEvent) => void} [onMessage] An application message.
 * @property {(info: CloseInfo) => void} [onClose] A socket closed.
 * @property {(error: WSAuthError) => void} [onError] The connection ended with an error.
 * @property {(state: ConnectionState, info: StateInfo) => void} [onStateChange] State changes.
 * @property {(info: RefreshInfo) => void} [onRefresh] The server accepted an in-band refresh.
 */

/**
 * @typedef {object} OpenInfo
 * @property {string} protocol The negotiated subprotocol ("" when none).
 */

/**
 * @typedef {object} CloseInfo
 * @property {number} code The close code (1006: no close frame, e.g. a refused handshake).
 * @property {string} reason The close reason.
 * @property {boolean} wasClean Whether the closing handshake completed.
 * @property {boolean} opened Whether this socket had opened.
 * @property {boolean} willReconnect Whether the client will open a new socket.
 */

/**
 * @typedef {object} StateInfo
 * @property {ConnectionState | null} previous The state before (null for the first).
 * @property {number} [attempt] For "reconnecting": the number of consecutive failures.
 * @property {number} [delay] For "reconnecting": ms until the next attempt.
 * @property {WSAuthError | null} [error] Why the client reconnects, or why it closed.
 */

/**
 * @typedef {object} RefreshInfo
 * @property {number} expiresIn Seconds until the server closes the socket, from now.
 */

/**
 * @typedef {object} TicketAnswer
 * @property {string} token
 * @property {number} maxConnectionAge
 * @property {boolean} refresh
 */

/** An error of the client; `kind` says what failed and `retryable` whether it retries. */
export class WSAuthError extends Error {
  /**
   * @param {ErrorKind} kind
   * @param {string} message
   * @param {{status?: number, reason?: string, code?: number, retryable?: boolean, cause?: unknown}} [details]
   */
  constructor(kind, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "WSAuthError";
    /** @type {ErrorKind} */
    this.kind = kind;
    /** HTTP status of the ticket endpoint's answer, when there was one. */
    this.status = details.status ?? null;
    /** The server's machine reason (`{"error": reason}` or a close reason), when known. */
    this.reason = details.reason ?? null;
    /** The socket's close code, when a socket closed. */
    this.code = details.code ?? null;
    /** Whether the client retries after this error. */
    this.retryable = details.retryable ?? false;
  }
}

const RECONNECT_DEFAULTS = Object.freeze({
  initialDelay: 500,
  maxDelay: 30_000,
  factor: 2,
  maxRetries: 10,
  stableAfter: 5_000,
});

/** The longest delay setTimeout can wait (ms, about 24.8 days); a longer one fires at once. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;

/**
 * A 4001 age close counts as the normal end of a socket only when the socket
 * lived this long (ms); a sooner one is a failure (backoff, counted), so a
 * server that accepts and closes with 4001 at once cannot cause a storm.
 */
const MIN_AGE_CLOSE_LIFETIME = 1_000;

/**
 * setTimeout with the delay clamped to what a timer can wait.
 *
 * @param {() => void} callback
 * @param {number} ms
 */
function later(callback, ms) {
  return setTimeout(callback, Math.min(ms, MAX_TIMER_DELAY));
}

/**
 * The reconnect settings with each missing (undefined or null) field defaulted.
 *
 * @param {ReconnectOptions} options
 * @returns {Required<ReconnectOptions>}
 */
function reconnectSettings(options) {
  return {
    initialDelay: options.initialDelay ?? RECONNECT_DEFAULTS.initialDelay,
    maxDelay: options.maxDelay ?? RECONNECT_DEFAULTS.maxDelay,
    factor: options.factor ?? RECONNECT_DEFAULTS.factor,
    maxRetries: options.maxRetries ?? RECONNECT_DEFAULTS.maxRetries,
    stableAfter: options.stableAfter ?? RECONNECT_DEFAULTS.stableAfter,
  };
}

/**
 * Default and check the `reconnect` option (null: `reconnect: false`).
 *
 * @param {ReconnectOptions | false | undefined} option
 * @returns {Required<ReconnectOptions> | null}
 */
function checkReconnect(option) {
  if (option === false) return null;
  if (option != null && (typeof option !== "object" || Array.isArray(option))) {
    throw new TypeError("wsauth: reconnect must be false or an object of settings");
  }
  const settings = reconnectSettings(option ?? {});
  for (const name of /** @type {const} */ (["initialDelay", "maxDelay", "stableAfter"])) {
    const value = settings[name];
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new TypeError(`wsauth: reconnect.${name} must be a finite number >= 0 (ms)`);
    }
  }
  const { factor, maxRetries } = settings;
  if (typeof factor !== "number" || !Number.isFinite(factor) || factor < 1) {
    throw new TypeError("wsauth: reconnect.factor must be a finite number >= 1");
  }
  if (!(maxRetries === Infinity || (Number.isInteger(maxRetries) && maxRetries >= 0))) {
    throw new TypeError("wsauth: reconnect.maxRetries must be an integer >= 0 or Infinity");
  }
  return settings;
}

/**
 * A timeout option: a finite number of milliseconds > 0 (NaN would abort at once).
 *
 * @param {string} name
 * @param {unknown} value
 * @returns {number}
 */
function checkTimeout(name, value) {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`wsauth: ${name} must be a finite number of ms > 0`);
  }
  return value;
}

/**
 * The delay before retry number `attempt` (1-based): "full jitter", a uniform
 * random value in [0, min(maxDelay, initialDelay * factor ** (attempt - 1))).
 *
 * @param {number} attempt
 * @param {ReconnectOptions} [options] fields left out (or undefined) take the defaults
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const { initialDelay, maxDelay, factor } = reconnectSettings(options);
  // factor ** n overflows to Infinity after enough failures: 0 * Infinity is NaN.
  const ceiling =
    initialDelay === 0 ? 0 : Math.min(maxDelay, initialDelay * factor ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/** @param {unknown} callback @param {...unknown} args */
function call(callback, ...args) {
  if (typeof callback !== "function") return;
  try {
    callback(...args);
  } catch (error) {
    // A failing callback must not break the state machine: report it the way
    // an uncaught error in an event listener would be.
    if (typeof globalThis.reportError === "function") globalThis.reportError(error);
    else setTimeout(() => { throw error; });
  }
}

/**
 * `url` with `name=value` as the last query parameter, every other parameter
 * exactly as written (URLSearchParams would re-encode them all: `%20` as `+`,
 * `flag` as `flag=`, `/` as `%2F`), and any earlier `name` parameter removed.
 *
 * @param {URL} url
 * @param {string} name
 * @param {string} value
 */
function withQueryParam(url, name, value) {
  const kept = url.search
    .slice(1)
    .split("&")
    .filter((pair) => pair && queryKey(pair) !== name);
  kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
  url.search = kept.join("&");
  return url;
}

/** @param {string} pair one `key=value` of a query string, as written */
function queryKey(pair) {
  const key = pair.split("=", 1)[0].replaceAll("+", " ");
  try {
    return decodeURIComponent(key);
  } catch {
    return key; // a malformed escape: not the ticket's name, kept as it is
  }
}

/** The page's URL, against which relative URLs resolve (none outside a page). */
function pageUrl() {
  return typeof location === "undefined" ? undefined : location.href;
}

/** @param {string} url */
function socketUrl(url) {
  const parsed = new URL(url, pageUrl());
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`wsauth: url must be a ws(s) or http(s) URL, got ${parsed.protocol}`);
  }
  parsed.hash = "";
  return parsed;
}

/**
 * Check close() arguments as WebSocket.close would, before any state changes.
 *
 * @param {unknown} code
 * @param {unknown} reason
 */
function checkClose(code, reason) {
  if (typeof code !== "number" || !Number.isInteger(code)) {
    throw new TypeError(`wsauth: close code must be an integer, got ${String(code)}`);
  }
  if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
    throw new RangeError(`wsauth: close code must be 1000 or 3000-4999, got ${code}`);
  }
  if (typeof reason !== "string") throw new TypeError("wsauth: close reason must be a string");
  // Lone surrogates encode as U+FFFD (3 bytes), as the browser counts them.
  const bytes = new TextEncoder().encode(reason).length;
  if (bytes > 123) {
    throw new RangeError(`wsauth: close reason must be at most 123 UTF-8 bytes, got ${bytes}`);
  }
}

/** Rejection of {@link untilAborted} when the signal aborts first. */
const ABORTED = Symbol("aborted");

/**
 * Settle as `value` does, or reject with {@link ABORTED} as soon as `signal` aborts.
 *
 * @template T
 * @param {T | Promise<T>} value
 * @param {AbortSignal} signal
 * @returns {Promise<T>}
 */
function untilAborted(value, signal) {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(ABORTED);
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    Promise.resolve(value)
      .then(resolve, reject)
      .finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** @param {Response} response */
async function errorReason(response) {
  try {
    const body = await response.json();
    const reason = body && body.error;
    return typeof reason === "string" && reason.length <= 100 ? reason : null;
  } catch {
    return null;
  }
}

/** @param {number} status */
function retryableStatus(status) {
  return status >= 500 || status === 408 || status === 425 || status === 429;
}

/**
 * @param {ConnectOptions} options
 */
function normalize(options) {
  if (!options || typeof options !== "object") throw new TypeError("wsauth: options required");
  const { tokenUrl, url } = options;
  if (typeof tokenUrl !== "string" || !tokenUrl) throw new TypeError("wsauth: tokenUrl required");
  if (typeof url !== "string" || !url) throw new TypeError("wsauth: url required");
  const transport = options.transport ?? "query";
  if (transport !== "query" && transport !== "subprotocol") {
    throw new TypeError(`wsauth: transport must be "query" or "subprotocol"`);
  }
  const tokenUrlParsed = (() => {
    try {
      return new URL(tokenUrl, pageUrl());
    } catch {
      return null;
    }
  })();
  if (!tokenUrlParsed || !["http:", "https:"].includes(tokenUrlParsed.protocol)) {
    throw new TypeError("wsauth: tokenUrl must be an http(s) URL, absolute or relative");
  }
  const credentials = options.credentials ?? "same-origin";
  if (!["omit", "same-origin", "include"].includes(credentials)) {
    throw new TypeError('wsauth: credentials must be "omit", "same-origin" or "include"');
  }
  const protocolPrefix = nonEmpty("protocolPrefix", options.protocolPrefix ?? "wsauth.ticket.");
  const queryParam = nonEmpty("queryParam", options.queryParam ?? "token");
  const offered = options.protocols ?? [];
  if (typeof offered !== "string" && !Array.isArray(offered)) {
    throw new TypeError("wsauth: protocols must be a subprotocol name or an array of them");
  }
  // One name alone is accepted, as the WebSocket constructor accepts it.
  const protocols = typeof offered === "string" ? [offered] : [...offered];
  if (protocols.some((p) => typeof p !== "string" || !p || p.startsWith(protocolPrefix))) {
    throw new TypeError("wsauth: protocols must be the app's own non-empty subprotocol names");
  }
  if (transport === "subprotocol" && protocols.length === 0) {
    // The browser fails a handshake in which it offered protocols and the
    // server selected none; the ticket entry is removed by the server, so a
    // real subprotocol that the route accepts must be offered beside it.
    throw new TypeError(
      'wsauth: the "subprotocol" transport needs protocols: a subprotocol the route accepts',
    );
  }
  const audienceParam = options.audienceParam ?? "audience";
  if (typeof audienceParam !== "string" || !audienceParam) {
    throw new TypeError("wsauth: audienceParam must be a non-empty string");
  }
  const refreshAt = options.refreshAt ?? 0.8;
  if (typeof refreshAt !== "number" || !(refreshAt > 0 && refreshAt < 1)) {
    throw new TypeError("wsauth: refreshAt must be a number in (0, 1)");
  }
  const refresh = options.refresh ?? true;
  if (typeof refresh !== "boolean") throw new TypeError("wsauth: refresh must be true or false");
  const binaryType = options.binaryType ?? "blob";
  if (binaryType !== "blob" && binaryType !== "arraybuffer") {
    throw new TypeError('wsauth: binaryType must be "blob" or "arraybuffer"');
  }
  const reconnect = checkReconnect(options.reconnect);
  const ticketTimeout = checkTimeout("ticketTimeout", options.ticketTimeout ?? 10_000);
  const openTimeout = checkTimeout("openTimeout", options.openTimeout ?? 10_000);
  return {
    ...options,
    transport,
    protocols,
    protocolPrefix,
    audienceParam,
    refreshAt,
    reconnect,
    socketUrl: socketUrl(url),
    credentials,
    queryParam,
    refresh,
    ticketTimeout,
    openTimeout,
    binaryType,
  };
}

/**
 * @param {string} name
 * @param {unknown} value
 * @returns {string}
 */
function nonEmpty(name, value) {
  if (typeof value !== "string" || !value) {
    throw new TypeError(`wsauth: ${name} must be a non-empty string`);
  }
  return value;
}

/**
 * One logical connection: a sequence of sockets, each opened with a fresh
 * ticket, until {@link WSAuthConnection#close} or a final error.
 */
export class WSAuthConnection {
  /** @type {ReturnType<typeof normalize>} */
  #o;
  /** @type {ConnectionState} */
  #state = "connecting";
  /** @type {WSAuthError | null} */
  #error = null;
  /** @type {WebSocket | null} */
  #ws = null;
  /** @type {AbortController | null} */
  #ticketRequest = null;
  /** @type {AbortController | null} */
  #refreshRequest = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #openTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #refreshTimer;
  #failures = 0;
  #openedAt = 0;
  #stopped = false;
  #refreshPending = false;
  #announced = false;

  /** @param {ConnectOptions} options */
  constructor(options) {
    this.#o = normalize(options);
    // Start after connect() returns, so that the first onStateChange call
    // ("connecting") happens when the caller already holds the handle.
    queueMicrotask(() => {
      if (this.#stopped) return;
      this.#announce();
      void this.#attempt();
    });
  }

  /** @returns {ConnectionState} "connecting", "open", "reconnecting" or "closed". */
  get state() {
    return this.#state;
  }

  /** @returns {WSAuthError | null} Why the connection closed, once closed by an error. */
  get error() {
    return this.#error;
  }

  /** @returns {string} The current socket's negotiated subprotocol ("" when none). */
  get protocol() {
    return this.#ws && this.#ws.readyState === WebSocket.OPEN ? this.#ws.protocol : "";
  }

  /**
   * Send a message on the open socket.
   *
   * @param {string | ArrayBufferLike | Blob | ArrayBufferView} data
   * @returns {boolean} true if handed to the socket; false (dropped) when not open.
   */
  send(data) {
    const ws = this.#ws;
    if (this.#state !== "open" || !ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(data);
    return true;
  }

  /**
   * Close for good: no reconnect, pending ticket requests are aborted.
   *
   * The arguments are checked first, in every state: an invalid call throws
   * and changes nothing (the connection goes on as before).
   *
   * @param {number} [code] Close code for the open socket (1000): 1000 or 3000-4999,
   *     the codes a browser lets a page send.
   * @param {string} [reason] Close reason, at most 123 bytes in UTF-8 ("").
   * @throws {TypeError} `code` is not an integer number or `reason` not a string.
   * @throws {RangeError} `code` is not 1000 or in 3000-4999, or `reason` is too long.
   */
  close(code = 1000, reason = "") {
    checkClose(code, reason);
    if (this.#stopped) return;
    // Closed before the first attempt started: report "connecting" first all the same.
    this.#announce();
    if (this.#stopped) return; // onStateChange closed it
    this.#stop();
    if (this.#ws) this.#ws.close(code, reason);
    this.#setState("closed", { error: null });
  }

  // -- internals ---------------------------------------------------------

  /** Report the first state, "connecting", exactly once. */
  #announce() {
    if (this.#announced) return;
    this.#announced = true;
    call(this.#o.onStateChange, "connecting", { previous: null });
  }

  /**
   * @param {ConnectionState} state
   * @param {Omit<StateInfo, "previous">} info
   * @param {boolean} [always] Report even when the state does not change.
   */
  #setState(state, info, always = false) {
    const previous = this.#state;
    if (previous === state && !always) return;
    this.#state = state;
    call(this.#o.onStateChange, state, { previous, ...info });
  }

  #stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#openTimer);
    clearTimeout(this.#refreshTimer);
    this.#ticketRequest?.abort();
    this.#refreshRequest?.abort();
    this.#ticketRequest = this.#refreshRequest = null;
  }

  /** @param {WSAuthError} error */
  #finish(error) {
    if (this.#stopped) return;
    this.#stop();
    this.#error = error;
    if (this.#ws && this.#ws.readyState <= WebSocket.OPEN) this.#ws.close(1000, error.kind);
    this.#setState("closed", { error });
    call(this.#o.onError, error);
  }

  async #attempt() {
    if (this.#stopped) return;
    const request = new AbortController();
    this.#ticketRequest = request;
    /** @type {TicketAnswer} */
    let ticket;
    try {
      ticket = await this.#fetchTicket(request);
    } catch (error) {
      if (this.#stopped || this.#ticketRequest !== request) return;
      this.#ticketRequest = null;
      this.#failed(/** @type {WSAuthError} */ (error));
      return;
    }
    if (this.#stopped || this.#ticketRequest !== request) return;
    this.#ticketRequest = null;
    this.#open(ticket);
  }

  /**
   * POST the ticket endpoint with the app's credentials.
   *
   * @param {AbortController} request
   * @returns {Promise<TicketAnswer>}
   */
  async #fetchTicket(request) {
    const o = this.#o;
    let timedOut = false;
    const timer = later(() => {
      timedOut = true;
      request.abort();
    }, o.ticketTimeout);
    try {
      let extra;
      try {
        // ticketTimeout bounds the callback too: one that never settles is a
        // timed-out ticket request, not a connection stuck in "connecting".
        extra =
          typeof o.headers === "function" ? await untilAborted(o.headers(), request.signal) : o.headers;
      } catch (cause) {
        if (cause === ABORTED) {
          const message = timedOut
            ? "the ticket request timed out (the headers callback did not settle)"
            : "the ticket request failed";
          throw new WSAuthError("network", message, { retryable: true });
        }
        throw new WSAuthError("auth", "the headers callback failed", { cause });
      }
      /** @type {Headers} */
      let headers;
      try {
        headers = new Headers(extra ?? undefined);
      } catch (cause) {
        // Not a valid HeadersInit (a bad name or value, a number, ...): the
        // app's credentials are unusable, like a callback that throws.
        throw new WSAuthError("auth", "the headers option gave invalid headers", { cause });
      }
      headers.set("Accept", "application/json");
      /** @type {string | undefined} */
      let body;
      if (o.audience != null) {
        headers.set("Content-Type", "application/json");
        body = JSON.stringify({ [o.audienceParam]: o.audience });
      }
      /** @type {Response} */
      let response;
      try {
        response = await fetch(o.tokenUrl, {
          method: "POST",
          headers,
          body,
          credentials: o.credentials,
          cache: "no-store",
          signal: request.signal,
        });
      } catch (cause) {
        const message = timedOut ? "the ticket request timed out" : "the ticket request failed";
        throw new WSAuthError("network", message, { cause, retryable: true });
      }
      const status = response.status;
      if (status === 401 || status === 403) {
        const reason = await errorReason(response);
        const message = `the ticket endpoint refused the credentials (${status}${reason ? ` ${reason}` : ""})`;
        throw new WSAuthError("auth", message, { status, reason: reason ?? undefined });
      }
      if (!response.ok) {
        const reason = await errorReason(response);
        throw new WSAuthError("http", `the ticket endpoint answered ${status}`, {
          status,
          reason: reason ?? undefined,
          retryable: retryableStatus(status),
        });
      }
      let data;
      try {
        data = await response.json();
      } catch (cause) {
        if (request.signal.aborted) {
          throw new WSAuthError("network", "the ticket request failed", { cause, retryable: true });
        }
        throw new WSAuthError("protocol", "the ticket endpoint did not answer JSON", { status });
      }
      if (!data || typeof data.token !== "string" || !data.token) {
        throw new WSAuthError("protocol", "the ticket endpoint's answer has no token", { status });
      }
      const age = Number(data.max_connection_age);
      return {
        token: data.token,
        maxConnectionAge: Number.isFinite(age) && age > 0 ? age : 0,
        refresh: data.refresh === true,
      };
    } finally {
      clearTimeout(timer);
    }
  }

  /** @param {WSAuthError} error a failed ticket request */
  #failed(error) {
    if (!error.retryable || !this.#o.reconnect) {
      error.retryable = false;
      this.#finish(error);
      return;
    }
    this.#retryLater(error);
  }

  /** @param {WSAuthError} error why */
  #retryLater(error) {
    const reconnect = /** @type {Required<ReconnectOptions>} */ (this.#o.reconnect);
    this.#failures += 1;
    if (this.#failures > reconnect.maxRetries) {
      this.#finish(
        new WSAuthError("network", `gave up after ${this.#failures} failed attempts: ${error.message}`, {
          status: error.status ?? undefined,
          reason: error.reason ?? undefined,
          code: error.code ?? undefined,
          cause: error,
        }),
      );
      return;
    }
    this.#schedule(backoffDelay(this.#failures, reconnect), error);
  }

  /**
   * @param {number} delay
   * @param {WSAuthError | null} error
   */
  #schedule(delay, error) {
    this.#setState("reconnecting", { attempt: this.#failures, delay, error }, true);
    if (this.#stopped) return; // onStateChange closed it: no timer left behind
    this.#retryTimer = later(() => void this.#attempt(), delay);
  }

  /** @param {TicketAnswer} ticket */
  #open(ticket) {
    const o = this.#o;
    const url = new URL(o.socketUrl.href);
    const protocols = [...o.protocols];
    if (o.transport === "query") withQueryParam(url, o.queryParam, ticket.token);
    else protocols.push(o.protocolPrefix + ticket.token);
    /** @type {WebSocket} */
    let ws;
    try {
      ws = protocols.length > 0 ? new WebSocket(url.href, protocols) : new WebSocket(url.href);
    } catch {
      // The browser's message quotes the URL or protocols, ticket included:
      // do not pass it on.
      this.#finish(new WSAuthError("config", "the WebSocket could not be created (bad url or protocols)"));
      return;
    }
    ws.binaryType = o.binaryType;
    this.#ws = ws;
    let opened = false;
    this.#openTimer = later(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, o.openTimeout);

    ws.onopen = () => {
      clearTimeout(this.#openTimer);
      if (this.#ws !== ws || this.#stopped) return;
      opened = true;
      this.#openedAt = Date.now();
      this.#setState("open", { error: null });
      if (this.#stopped) return; // onStateChange closed it: no onOpen, no refresh timer
      if (o.refresh && ticket.refresh && ticket.maxConnectionAge > 0) {
        this.#scheduleRefresh(ticket.maxConnectionAge);
      }
      call(o.onOpen, { protocol: ws.protocol });
    };
    ws.onmessage = (event) => {
      if (this.#ws !== ws || this.#stopped) return;
      if (this.#refreshPending && this.#takeRefreshed(event.data)) return;
      call(o.onMessage, event.data, event);
    };
    ws.onclose = (event) => this.#closed(ws, event, opened);
  }

  /**
   * @param {WebSocket} ws
   * @param {CloseEvent} event
   * @param {boolean} opened
   */
  #closed(ws, event, opened) {
    if (this.#ws !== ws) return;
    this.#ws = null;
    clearTimeout(this.#openTimer);
    clearTimeout(this.#refreshTimer);
    this.#refreshRequest?.abort();
    this.#refreshRequest = null;
    this.#refreshPending = false;
    const o = this.#o;
    const reconnect = o.reconnect;
    const info = { code: event.code, reason: event.reason, wasClean: event.wasClean, opened };
    if (this.#stopped) {
      call(o.onClose, { ...info, willReconnect: false });
      return;
    }
    // After each onClose call: the app may have called close() in it, and then
    // the connection stays closed (no retry, no error).
    const lived = opened ? Date.now() - this.#openedAt : 0;
    if (opened && event.code === AGE_CLOSE_CODE && lived >= MIN_AGE_CLOSE_LIFETIME) {
      // The server's normal age cap: reconnect at once, no backoff penalty
      // (even with reconnect: false, which is about recovering from failures).
      call(o.onClose, { ...info, willReconnect: true });
      if (this.#stopped) return;
      this.#failures = 0;
      this.#schedule(0, null);
      return;
    }
    const error = opened
      ? new WSAuthError("closed", `the socket closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`, {
          code: event.code,
          reason: event.reason || undefined,
          retryable: true,
        })
      : new WSAuthError("network", "the WebSocket handshake failed (network error or refused handshake)", {
          code: event.code,
          retryable: true,
        });
    if (!reconnect) {
      call(o.onClose, { ...info, willReconnect: false });
      if (this.#stopped) return;
      const normal = opened && (event.code === 1000 || event.code === 1001);
      if (normal) {
        this.#stop();
        this.#setState("closed", { error: null });
      } else {
        error.retryable = false;
        this.#finish(error);
      }
      return;
    }
    // A 4001 this soon after opening is a failure, whatever stableAfter says.
    const tooSoon = event.code === AGE_CLOSE_CODE;
    if (opened && !tooSoon && lived >= reconnect.stableAfter) this.#failures = 0;
    const willReconnect = this.#failures + 1 <= reconnect.maxRetries;
    call(o.onClose, { ...info, willReconnect });
    if (this.#stopped) return;
    this.#retryLater(error);
  }

  /** @param {number} seconds the connection's remaining age */
  #scheduleRefresh(seconds) {
    clearTimeout(this.#refreshTimer);
    // Clamped: a delay over about 24.8 days (an age over 31 days at refreshAt
    // 0.8) would overflow the timer and fire at once, and every answer would
    // reschedule at once again: a refresh storm.
    this.#refreshTimer = later(() => void this.#refresh(), seconds * this.#o.refreshAt * 1000);
  }

  async #refresh() {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.#stopped) return;
    const request = new AbortController();
    this.#refreshRequest = request;
    /** @type {TicketAnswer} */
    let ticket;
    try {
      ticket = await this.#fetchTicket(request);
    } catch (error) {
      if (this.#stopped || this.#ws !== ws || this.#refreshRequest !== request) return;
      this.#refreshRequest = null;
      // The credentials were revoked: end for good. Otherwise let the server's
      // age cap (4001) close the socket; the client then reconnects.
      if (/** @type {WSAuthError} */ (error).kind === "auth") this.#finish(/** @type {WSAuthError} */ (error));
      return;
    }
    if (this.#stopped || this.#ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    this.#refreshRequest = null;
    this.#refreshPending = true;
    ws.send(JSON.stringify({ type: REFRESH_TYPE, token: ticket.token }));
  }

  /**
   * Consume the server's answer to a refresh.
   *
   * @param {unknown} data
   * @returns {boolean} whether `data` was that answer
   */
  #takeRefreshed(data) {
    if (typeof data !== "string" || !data.includes(REFRESHED_TYPE)) return false;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return false;
    }
    if (!message || typeof message !== "object" || message.type !== REFRESHED_TYPE) return false;
    this.#refreshPending = false;
    const expiresIn = Number(message.expires_in);
    if (Number.isFinite(expiresIn) && expiresIn > 0) this.#scheduleRefresh(expiresIn);
    call(this.#o.onRefresh, { expiresIn });
    return true;
  }
}

/**
 * Open an authenticated WebSocket that fetches a fresh ticket for every
 * socket and reconnects by itself.
 *
 * @param {ConnectOptions} options
 * @returns {WSAuthConnection} the handle: `state`, `error`, `protocol`, `send()`, `close()`.
 * @throws {TypeError} a required option is missing or invalid.
 */
export function connect(options) {
  return new WSAuthConnection(options);
}
