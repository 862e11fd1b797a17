#!/usr/bin/env node
// Mint a sanic-wsauth ticket (format v1) in Node.js, with built-in modules
// only. See docs/ticket-format.md; the Python test suite runs this file and
// checks its tickets against tests/vectors.json and TicketVerifier.
//
//   WSAUTH_SECRET=... node examples/issue-ticket.mjs --subject alice \
//       [--audience /chat] [--client-ip 203.0.113.7] [--claims '{"role":"admin"}'] \
//       [--salt sanic-wsauth] [--jti <32 hex>] [--timestamp <unix seconds>]
//
// --jti and --timestamp exist to reproduce test vectors; leave them out in real
// use. The ticket is printed on stdout. Exit codes: 0 ok, 2 usage or
// configuration error (one line on stderr; the secret is never printed).
//
// As a module, `import { signPayload } from "./issue-ticket.mjs"` gives the
// signing function alone: the command line runs only when this file is the
// program's entry point.

import { createHmac, randomUUID } from "node:crypto";
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";

const SALT = "sanic-wsauth";
const MIN_KEY_BYTES = 32;
const MAX_TOKEN_CHARS = 4096; // the verifier's default size cap
const OPTIONS = ["subject", "audience", "client-ip", "claims", "salt", "jti", "timestamp"];

/** base64url without "=" padding (RFC 4648 section 5). */
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");

/** Compact JSON with non-ASCII as raw UTF-8, as itsdangerous and sanic-wsauth write it. */
const compactJson = (value) => JSON.stringify(value);

/** An integer as big-endian bytes with the leading zero bytes stripped. */
function timestampBytes(seconds) {
  const bytes = [];
  for (let n = BigInt(seconds); n > 0n; n >>= 8n) bytes.unshift(Number(n & 0xffn));
  return Buffer.from(bytes);
}

/**
 * Sign a payload object: the whole format in five lines.
 * @param {string} secret at least 32 bytes, shared with the Sanic server
 * @param {object} payload {jti, sub, [aud], [ip], [ext]}
 * @param {{timestamp?: number, salt?: string}} options
 * @returns {string} the ticket
 */
export function signPayload(secret, payload, { timestamp, salt = SALT } = {}) {
  const seconds = timestamp ?? Math.floor(Date.now() / 1000);
  const key = createHmac("sha256", secret).update(salt).digest(); // key_derivation="hmac"
  const signingInput = `${b64url(Buffer.from(compactJson(payload), "utf8"))}.${b64url(timestampBytes(seconds))}`;
  const signature = createHmac("sha256", key).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
}

function fail(message) {
  process.stderr.write(`issue-ticket: error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].startsWith("--") ? argv[i].slice(2) : "";
    if (!OPTIONS.includes(name)) fail(`unknown argument ${JSON.stringify(argv[i])}`);
    if (i + 1 >= argv.length) fail(`--${name} needs a value`);
    options[name] = argv[i + 1];
  }
  return options;
}

/** Length in code points, as the Python verifier counts it. */
const codePoints = (text) => [...text].length;

function buildPayload(options) {
  const subject = options.subject;
  if (subject === undefined) fail("--subject is required");
  if (codePoints(subject) < 1 || codePoints(subject) > 256) fail("--subject must be 1 to 256 characters");
  const jti = options.jti ?? randomUUID().replaceAll("-", "");
  if (!/^[0-9a-f]{32}$/.test(jti)) fail("--jti must be 32 lowercase hex characters");
  const payload = { jti, sub: subject };
  if (options.audience !== undefined) {
    if (codePoints(options.audience) < 1 || codePoints(options.audience) > 256) {
      fail("--audience must be 1 to 256 characters");
    }
    payload.aud = options.audience;
  }
  if (options["client-ip"] !== undefined) {
    if (!options["client-ip"]) fail("--client-ip must not be empty");
    payload.ip = options["client-ip"]; // the verifier normalises it
  }
  if (options.claims !== undefined) {
    let claims;
    try {
      claims = JSON.parse(options.claims);
    } catch {
      fail("--claims is not valid JSON");
    }
    if (claims === null || typeof claims !== "object" || Array.isArray(claims)) {
      fail("--claims must be a JSON object");
    }
    if (Object.keys(claims).length > 0) payload.ext = claims;
  }
  return payload;
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const secret = process.env.WSAUTH_SECRET || process.env.SANIC_WSAUTH_SECRET;
  if (!secret) fail("set WSAUTH_SECRET (or SANIC_WSAUTH_SECRET) to the server's secret");
  const secretBytes = Buffer.byteLength(secret, "utf8");
  if (secretBytes < MIN_KEY_BYTES) {
    fail(`the secret is ${secretBytes} bytes; at least ${MIN_KEY_BYTES} are required`);
  }
  let timestamp;
  if (options.timestamp !== undefined) {
    if (!/^\d{1,19}$/.test(options.timestamp) || BigInt(options.timestamp) >= 2n ** 64n) {
      fail("--timestamp must be whole seconds since the epoch");
    }
    timestamp = BigInt(options.timestamp);
  }
  const ticket = signPayload(secret, buildPayload(options), {
    timestamp,
    salt: options.salt ?? SALT,
  });
  if (ticket.length > MAX_TOKEN_CHARS) {
    process.stderr.write(
      `issue-ticket: warning: ${ticket.length} characters; verifiers refuse more than ${MAX_TOKEN_CHARS} by default\n`,
    );
  }
  process.stdout.write(`${ticket}\n`);
}

/** Whether this file is the program's entry point (`node issue-ticket.mjs ...`), not an import. */
function isEntryPoint() {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    // Node loads the entry point by its real path (symlinks resolved).
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) main();
