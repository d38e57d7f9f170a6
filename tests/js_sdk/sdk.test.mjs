// Native tests of the JavaScript SDK's own logic (plugin-sdk/js/duplex.js):
// parameters, results, logging, and the capability helpers over stand-ins of
// the imported interfaces (what a component's imports look like from JS:
// records as objects, enums as strings, list<u8> as Uint8Array, errors
// thrown with the host's message as `payload`). Run by
// tests/js_plugin.rs::the_js_sdks_unit_tests_pass:
//   node --import ./register.mjs --test sdk.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logged } from './host-stub.mjs';
import {
  params, requireString, pass, fail, log, progress, hostError, filesIn, storageOf, httpOf,
} from '../../plugin-sdk/js/duplex.js';

const bytes = (s) => new TextEncoder().encode(s);

class ComponentError extends Error {
  constructor(payload) {
    super(String(payload));
    this.payload = payload;
  }
}

test('parameters are a JSON object, and wrong ones are errors naming the request', () => {
  assert.deepEqual(params({ params: '{"root":"data"}', request: 'gate/x' }), { root: 'data' });
  assert.deepEqual(params({ params: '', request: 'gate/x' }), {});
  assert.throws(() => params({ params: '[1]', request: 'gate/x' }), (e) => e === 'gate/x: parameters must be a JSON object');
  assert.throws(() => params({ params: '{', request: 'gate/x' }), (e) => e.startsWith('gate/x: parameters are not JSON: '));
  assert.throws(() => requireString({}, 'root'), (e) => e === 'parameter `root` must be a non-empty string');
});

test('results carry their observations as strings, and logging reaches host', () => {
  assert.deepEqual(pass('ok', { free: 10n, ok: true }), {
    verdict: 'pass', message: 'ok', observations: [['free', '10'], ['ok', 'true']],
  });
  assert.equal(fail('no').verdict, 'fail');
  logged.length = 0;
  log.info('hello');
  progress(150, 'more than done');
  assert.deepEqual(logged, [['info', 'hello'], ['progress', '100% more than done']]);
});

test('files: a file is read in chunks up to the limit; write, exists, list, free space', () => {
  const content = new Uint8Array(150000).map((_, i) => i % 251);
  const asked = [];
  const written = new Map();
  const files = {
    read(root, path, offset, max) {
      asked.push([root, path, offset, max]);
      return content.slice(Number(offset), Number(offset) + max);
    },
    stat: (root, path) => (path === 'a' ? { kind: 'file', size: 1n, modifiedMs: 0n, mode: 0o644 } : undefined),
    list: (root, path) => [{ name: `${root}:${path}`, kind: 'directory' }],
    write: (root, path, data) => written.set(`${root}/${path}`, new TextDecoder().decode(data)),
    freeSpace: () => 42n,
  };
  const data = filesIn(files, 'data');
  assert.equal(data.readText('big', 70000).length, 70000);
  assert.deepEqual(asked.map((a) => [a[2], a[3]]), [[0n, 65536], [65536n, 4464]]);
  assert.deepEqual(asked[0].slice(0, 2), ['data', 'big']);
  assert.equal(data.exists('a'), true);
  assert.equal(data.exists('b'), false);
  assert.deepEqual(data.list(), [{ name: 'data:.', kind: 'directory' }]);
  data.write('status.json', '{"ready":true}');
  assert.deepEqual([...written], [['data/status.json', '{"ready":true}']]);
  assert.equal(data.freeSpace(), 42n);
});

test('storage: JSON values round-trip, missing keys give the fallback, bad JSON names its key', () => {
  const kept = new Map();
  const kv = storageOf({
    get: (k) => kept.get(k),
    set: (k, v) => kept.set(k, v),
    delete: (k) => kept.delete(k),
    listKeys: () => [...kept.keys()].sort(),
  });
  assert.equal(kv.getJson('seen', 0), 0);
  kv.setJson('seen', { count: 2 });
  assert.deepEqual(kv.getJson('seen'), { count: 2 });
  kv.set('raw', 'text');
  assert.deepEqual(kv.get('raw'), bytes('text'));
  assert.deepEqual(kv.keys(), ['raw', 'seen']);
  kv.delete('raw');
  assert.equal(kv.get('raw'), undefined);
  kept.set('broken', bytes('{nope'));
  assert.throws(() => kv.getJson('broken'), (e) => e.startsWith('the value of `broken` in storage is not JSON: '));
  const refusing = storageOf({ get: () => { throw new ComponentError('storage is not granted'); } });
  assert.throws(() => refusing.get('k'), (e) => hostError(e) === 'storage is not granted');
});

test('http: the request as the interface takes it; the answer with header, text and json', () => {
  let sent;
  const http = {
    send(req) {
      sent = req;
      return {
        status: 200, headers: [['Content-Type', 'application/json']], body: bytes('{"status":"ok"}'),
        truncated: false, url: req.url,
      };
    },
  };
  const r = httpOf(http).get('http://127.0.0.1:8080/health', { headers: { accept: 'application/json' }, timeoutMs: 2000 });
  assert.deepEqual(sent, {
    method: 'get', url: 'http://127.0.0.1:8080/health', headers: [['accept', 'application/json']],
    body: new Uint8Array(), timeoutMs: 2000,
  });
  assert.equal(r.status, 200);
  assert.equal(r.header('content-type'), 'application/json');
  assert.deepEqual(r.json(), { status: 'ok' });
  httpOf(http).post('http://127.0.0.1:8080/x', { body: 'hi' });
  assert.deepEqual([sent.method, new TextDecoder().decode(sent.body), sent.timeoutMs], ['post', 'hi', undefined]);
  const notJson = httpOf({ send: (q) => ({ status: 200, headers: [], body: bytes('<html>'), truncated: false, url: q.url }) });
  assert.throws(() => notJson.get('http://h/').json(), (e) => e.startsWith('the answer of http://h/ is not JSON: '));
  const refused = httpOf({ send: () => { throw new ComponentError('origin http://h is not granted'); } });
  assert.throws(() => refused.get('http://h/'), (e) => hostError(e) === 'origin http://h is not granted');
});
