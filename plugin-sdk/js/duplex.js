// The Duplex plugin SDK for JavaScript (duplex:plugin@0.1.0).
//
// A plugin is an ES module that exports `describe`, `check`, `operate`,
// `install` and `partner` (the exports of the WIT world `plugin`);
// plugin-sdk/js/build.mjs turns it into a WebAssembly component with
// componentize-js. This module holds what every plugin needs: parameters
// (JSON), check results, logging, progress and results of operations, and
// thin layers over the `files`, `storage` and `http` capabilities. Imports of
// an interface only exist in the component when the plugin's WIT world
// imports it (see README.md): this module imports `host` only; the
// capability helpers (`filesIn`, `storageOf`, `httpOf`) take the imported
// module.
import { log as hostLog, progress as hostProgress } from 'duplex:plugin/host@0.1.0';

/// The contract this SDK speaks.
export const CONTRACT = 'duplex:plugin@0.1.0';

// --- logging ---------------------------------------------------------------

/// Log lines, written to the session's activity log.
export const log = {
  trace: (message) => hostLog('trace', String(message)),
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

/// Progress of the current call (0..=100).
export function progress(percent, message) {
  hostProgress(Math.max(0, Math.min(100, Math.round(percent))), String(message));
}

// --- parameters --------------------------------------------------------------

/// A call's `with:` block (JSON text) as an object; throws a message naming
/// the request when it is not a JSON object. `duplex validate` has already
/// checked it against the schema `describe` gives, so this is a safety net.
export function params(ctx) {
  let value;
  try {
    value = JSON.parse(ctx.params || '{}');
  } catch (e) {
    throw `${ctx.request}: parameters are not JSON: ${e.message}`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw `${ctx.request}: parameters must be a JSON object`;
  }
  return value;
}

/// A required string parameter.
export function requireString(p, key) {
  const v = p[key];
  if (typeof v !== 'string' || v.length === 0) {
    throw `parameter \`${key}\` must be a non-empty string`;
  }
  return v;
}

// --- describe ----------------------------------------------------------------

/// A check's description; `schema` is a JSON Schema object for its `with:`.
export function checkInfo(name, description, schema) {
  return { name, description, paramsSchema: JSON.stringify(schema) };
}

/// The plugin's description (what `describe` returns).
export function pluginInfo({ name, version, description, checks = [], operations = [], installers = [], reportsPartner = false }) {
  return { name, version, description, checks, operations, installers, reportsPartner };
}

// --- check results -----------------------------------------------------------

function observations(obs) {
  return Object.entries(obs || {}).map(([k, v]) => [String(k), String(v)]);
}

/// A passing check, with measured facts (`{ key: value }`) for the activity log.
export function pass(message, obs) {
  return { verdict: 'pass', message: String(message), observations: observations(obs) };
}

/// A failing check.
export function fail(message, obs) {
  return { verdict: 'fail', message: String(message), observations: observations(obs) };
}

/// Not known yet (the runner asks again).
export function inconclusive(message, obs) {
  return { verdict: 'inconclusive', message: String(message), observations: observations(obs) };
}

// --- progress (operate / install) --------------------------------------------

export const done = (message) => ({ tag: 'done', val: String(message) });
export const pending = (percent, message, retryAfterMs) =>
  ({ tag: 'pending', val: { percent, message: String(message), retryAfterMs } });
export const failed = (message, retryable = false) =>
  ({ tag: 'failed', val: { message: String(message), retryable } });

/// What a check-only plugin answers to `operate`.
export function notAnOperator(op) {
  return failed(`this plugin provides no hardware operations (asked for \`${op}\`)`);
}

/// What a check-only plugin answers to `install`.
export function notAnInstaller(artifact) {
  return failed(`this plugin installs nothing (asked for \`${artifact.name}\`)`);
}

// --- files ---------------------------------------------------------------------

/// Errors of an imported function that returns `result<_, string>` arrive as
/// exceptions whose `payload` is the host's message.
export function hostError(e) {
  return e && typeof e === 'object' && 'payload' in e ? String(e.payload) : String(e);
}

const decoder = new TextDecoder();

/// Helpers over the `files` capability. `files` is the imported interface:
///   import * as files from 'duplex:plugin/files@0.1.0';
///   const fs = filesIn(files, 'releases');
export function filesIn(files, root) {
  return {
    root,
    /// The whole file as text (up to `maxBytes`, 1 MiB by default).
    readText(path, maxBytes = 1 << 20) {
      const parts = [];
      let offset = 0n;
      for (;;) {
        const want = Math.min(65536, maxBytes - Number(offset));
        if (want <= 0) break;
        const chunk = files.read(root, path, offset, want);
        if (chunk.length === 0) break;
        parts.push(chunk);
        offset += BigInt(chunk.length);
      }
      const all = new Uint8Array(Number(offset));
      let at = 0;
      for (const p of parts) { all.set(p, at); at += p.length; }
      return decoder.decode(all);
    },
    /// Metadata (`kind`, `size`, `modifiedMs` as BigInt, `mode`), or undefined.
    stat(path) {
      return files.stat(root, path);
    },
    /// Entries of a directory.
    list(path = '.') {
      return files.list(root, path);
    },
    /// Whether something is at `path`.
    exists(path) {
      return files.stat(root, path) !== undefined;
    },
    /// Replaces the file atomically (the grant must be writable).
    write(path, data) {
      files.write(root, path, typeof data === 'string' ? encoder.encode(data) : data);
    },
    /// Free bytes on the grant's filesystem (a BigInt).
    freeSpace() {
      return files.freeSpace(root);
    },
  };
}

const encoder = new TextEncoder();

// --- storage -------------------------------------------------------------------

/// Helpers over the `storage` capability (the plugin's key-value store, kept
/// across calls and sessions). `storage` is the imported interface:
///   import * as storage from 'duplex:plugin/storage@0.1.0';
///   const kv = storageOf(storage);
///   const seen = kv.getJson('seen', 0);
/// The host's refusals are thrown as they come (see `hostError`).
export function storageOf(storage) {
  return {
    /// The bytes under `key` (a Uint8Array), or undefined.
    get(key) {
      return storage.get(key);
    },
    /// Stores bytes, or a string as UTF-8.
    set(key, value) {
      storage.set(key, typeof value === 'string' ? encoder.encode(value) : value);
    },
    delete(key) {
      storage.delete(key);
    },
    keys() {
      return storage.listKeys();
    },
    /// The JSON value under `key`, `fallback` when there is none; throws a
    /// message naming the key when the value is not JSON.
    getJson(key, fallback = undefined) {
      const raw = storage.get(key);
      if (raw === undefined) return fallback;
      try {
        return JSON.parse(decoder.decode(raw));
      } catch (e) {
        throw `the value of \`${key}\` in storage is not JSON: ${e.message}`;
      }
    },
    setJson(key, value) {
      storage.set(key, encoder.encode(JSON.stringify(value)));
    },
  };
}

// --- http ----------------------------------------------------------------------

/// Helpers over the `http` capability (requests to the origins the policy
/// grants). `http` is the imported interface:
///   import * as http from 'duplex:plugin/http@0.1.0';
///   const r = httpOf(http).get('http://127.0.0.1:8080/health', { timeoutMs: 2000 });
///   if (r.status === 200 && r.json().status === 'ok') ...
/// A refusal of the grant or no answer (connection refused, timeout) is
/// thrown as it comes (see `hostError`).
export function httpOf(http) {
  const request = (method, url, { headers = {}, body, timeoutMs } = {}) => {
    const r = http.send({
      method,
      url,
      headers: Object.entries(headers).map(([k, v]) => [String(k), String(v)]),
      body: body === undefined ? new Uint8Array() : typeof body === 'string' ? encoder.encode(body) : body,
      timeoutMs,
    });
    return {
      status: r.status,
      headers: r.headers,
      body: r.body,
      truncated: r.truncated,
      url: r.url,
      /// The first header called `name` (case-insensitive), or undefined.
      header(name) {
        const lower = String(name).toLowerCase();
        const found = r.headers.find(([k]) => k.toLowerCase() === lower);
        return found ? found[1] : undefined;
      },
      text() {
        return decoder.decode(r.body);
      },
      /// The body as JSON; throws a message naming the URL when it is not.
      json() {
        try {
          return JSON.parse(decoder.decode(r.body));
        } catch (e) {
          throw `the answer of ${r.url} is not JSON: ${e.message}`;
        }
      },
    };
  };
  return {
    request,
    get: (url, options) => request('get', url, options),
    head: (url, options) => request('head', url, options),
    post: (url, options) => request('post', url, options),
  };
}
