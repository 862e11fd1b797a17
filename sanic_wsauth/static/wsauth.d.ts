/**
 * Types of the sanic-wsauth browser client (`wsauth.js`, a dependency-free ES module).
 */

/** Close code the server sends when a connection reaches its maximum age. */
export declare const AGE_CLOSE_CODE: 4001;
/** Close code the server sends when an in-band refresh is refused. */
export declare const REFRESH_CLOSE_CODE: 4003;
/** `type` of the in-band refresh frame the client sends. */
export declare const REFRESH_TYPE: "wsauth.refresh";
/** `type` of the server's answer to a good refresh. */
export declare const REFRESHED_TYPE: "wsauth.refreshed";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";
export type Transport = "query" | "subprotocol";
/**
 * - `auth`: the ticket endpoint answered 401/403, or the `headers` callback threw or `headers`
 *   gave an invalid `HeadersInit` (the browser's TypeError is the `cause`); never retried.
 * - `http`: another non-2xx answer; 5xx, 408, 425 and 429 are retried.
 * - `network`: the ticket request or the handshake failed, the ticket request (the `headers`
 *   callback included) timed out, or the client gave up retrying.
 * - `protocol`: the ticket endpoint's 2xx answer is not `{"token": ...}` JSON.
 * - `closed`: an open socket closed (retried unless `reconnect` is false), a 4001 age close
 *   within 1 s of opening included.
 * - `config`: the browser refused to create the WebSocket (bad url or protocols).
 */
export type ErrorKind = "auth" | "http" | "network" | "protocol" | "closed" | "config";

/**
 * A field left out, `undefined` or `null` takes its default; any other invalid value makes
 * `connect()` throw a `TypeError`.
 */
export interface ReconnectOptions {
  /** Ceiling of the first retry's random delay, ms, finite and >= 0. Default 500. */
  initialDelay?: number;
  /** Cap of the delay ceiling, ms, finite and >= 0. Default 30000. */
  maxDelay?: number;
  /** Growth of the ceiling per consecutive failure, finite and >= 1. Default 2. */
  factor?: number;
  /**
   * Consecutive failed retries before giving up, an integer >= 0. Default 10; `Infinity`
   * never gives up.
   */
  maxRetries?: number;
  /** A socket that stayed open this long (ms, finite, >= 0) resets the failure count. Default 5000. */
  stableAfter?: number;
}

export interface OpenInfo {
  /** The negotiated subprotocol ("" when none). */
  protocol: string;
}

export interface CloseInfo {
  /** The close code (1006: no close frame, e.g. a refused handshake or a network failure). */
  code: number;
  reason: string;
  wasClean: boolean;
  /** Whether this socket had opened. */
  opened: boolean;
  /** Whether the client will open a new socket. */
  willReconnect: boolean;
}

export interface StateInfo {
  /** The state before; null for the first report ("connecting"). */
  previous: ConnectionState | null;
  /** For "reconnecting": the number of consecutive failures (0 after an age close). */
  attempt?: number;
  /** For "reconnecting": ms until the next attempt. */
  delay?: number;
  /** Why the client reconnects, or why it closed (null: closed on purpose). */
  error?: WSAuthError | null;
}

export interface RefreshInfo {
  /** Seconds until the server closes the socket, counted from now. */
  expiresIn: number;
}

export interface ConnectOptions {
  /** The ticket endpoint (POST), e.g. "/authenticate/token". */
  tokenUrl: string;
  /** The socket URL; relative, http(s) and ws(s) URLs are accepted. */
  url: string;
  /** Where the ticket travels. Default "query". */
  transport?: Transport;
  /**
   * The app's real subprotocols. When any is offered the server must select one (the browser
   * fails the handshake otherwise). Required for the "subprotocol" transport. One name alone
   * is accepted, as the WebSocket constructor accepts it.
   */
  protocols?: string | string[];
  /** Headers for the ticket request, or a callback called before every request. */
  headers?: HeadersInit | (() => HeadersInit | Promise<HeadersInit>);
  /** fetch credentials mode, for cookie sessions. Default "same-origin". */
  credentials?: RequestCredentials;
  /** Ask for a ticket bound to this audience (sent as a JSON body). */
  audience?: string;
  /**
   * Backoff settings, or false to never retry after a failure (a 4001 age close still
   * reconnects; one within 1 s of opening is a failure, with backoff and counted).
   */
  reconnect?: ReconnectOptions | false;
  /** Refresh in-band when the ticket endpoint says `refresh: true`. Default true. */
  refresh?: boolean;
  /** Fraction of the connection age at which to refresh, in (0, 1). Default 0.8. */
  refreshAt?: number;
  /**
   * Abort a ticket request after this many ms, the `headers` callback included (one that has
   * not settled by then is a `network` error, retried). A finite number > 0. Default 10000.
   */
  ticketTimeout?: number;
  /** Give up on a handshake after this many ms: a finite number > 0. Default 10000. */
  openTimeout?: number;
  /** The socket's binaryType. Default "blob". */
  binaryType?: BinaryType;
  /** Body field of the audience. Default "audience" (server: WSAUTH_AUDIENCE_PARAM). */
  audienceParam?: string;
  /** Query parameter of the ticket. Default "token" (server: WSAUTH_QUERY_PARAM). */
  queryParam?: string;
  /** Subprotocol prefix of the ticket. Default "wsauth.ticket." (WSAUTH_SUBPROTOCOL_PREFIX). */
  protocolPrefix?: string;
  onOpen?: (info: OpenInfo) => void;
  /** An application message (the server's refresh answers are not passed on). */
  onMessage?: (data: any, event: MessageEvent) => void;
  onClose?: (info: CloseInfo) => void;
  /** The connection ended with an error (once; `state` is then "closed"). */
  onError?: (error: WSAuthError) => void;
  /**
   * Every state entered, including the first ("connecting", reported exactly once, also when
   * `close()` comes before the first attempt) and each retry.
   */
  onStateChange?: (state: ConnectionState, info: StateInfo) => void;
  onRefresh?: (info: RefreshInfo) => void;
}

export declare class WSAuthError extends Error {
  constructor(
    kind: ErrorKind,
    message: string,
    details?: { status?: number; reason?: string; code?: number; retryable?: boolean; cause?: unknown },
  );
  readonly name: "WSAuthError";
  kind: ErrorKind;
  /** HTTP status of the ticket endpoint's answer, when there was one. */
  status: number | null;
  /** The server's machine reason (`{"error": reason}` or a close reason), when known. */
  reason: string | null;
  /** The socket's close code, when a socket closed. */
  code: number | null;
  /** Whether the client retries after this error. */
  retryable: boolean;
}

export declare class WSAuthConnection {
  constructor(options: ConnectOptions);
  /** "connecting", "open", "reconnecting" or "closed". */
  readonly state: ConnectionState;
  /** Why the connection closed, once closed by an error; otherwise null. */
  readonly error: WSAuthError | null;
  /** The open socket's negotiated subprotocol ("" when none or not open). */
  readonly protocol: string;
  /** Send on the open socket; returns false (message dropped) when not open. */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): boolean;
  /**
   * Close for good: no reconnect; pending ticket requests are aborted. Also from inside a
   * callback (e.g. `onClose`): the state stays "closed".
   *
   * `code` (default 1000) must be 1000 or 3000-4999 and `reason` (default "") at most
   * 123 bytes in UTF-8, the limits of `WebSocket.close`. They are checked first, in every
   * state: an invalid call throws and changes nothing (the connection goes on as before).
   *
   * @throws {TypeError} `code` is not an integer number or `reason` is not a string.
   * @throws {RangeError} `code` is not 1000 or in 3000-4999, or `reason` is too long.
   */
  close(code?: number, reason?: string): void;
}

/**
 * The delay (ms) before retry number `attempt` (1-based), "full jitter": uniform in
 * [0, min(maxDelay, initialDelay * factor ** (attempt - 1))).
 */
export declare function backoffDelay(
  attempt: number,
  options?: ReconnectOptions,
  random?: () => number,
): number;

/**
 * Open an authenticated WebSocket that fetches a fresh ticket for every socket and
 * reconnects by itself.
 *
 * @throws {TypeError} a required option is missing or invalid.
 */
export declare function connect(options: ConnectOptions): WSAuthConnection;
