// js-file-checks: readiness checks over a deployed release's files, through
// the `files` capability (a directory the policy grants under a name).
//
//   release-version  the release's version file says the expected version
//   status-ready     the service's status file (JSON) says it is ready,
//                    running the expected version, written after the release
import * as files from 'duplex:plugin/files@0.1.0';
import {
  log, params, requireString, checkInfo, pluginInfo, pass, fail, inconclusive,
  notAnOperator, notAnInstaller, filesIn, hostError,
} from '../../../plugin-sdk/js/duplex.js';

const ROOT = {
  type: 'string',
  description: 'The name of the `files` grant that holds the release (capabilities.files[].name)',
};

const CHECKS = {
  'release-version': {
    info: checkInfo(
      'release-version',
      "The release's version file (one line) says the expected version",
      {
        type: 'object',
        additionalProperties: false,
        required: ['root', 'version'],
        properties: {
          root: ROOT,
          path: { type: 'string', default: 'current/VERSION', description: 'The version file, relative to the grant' },
          version: { type: 'string', minLength: 1, description: 'The expected version' },
        },
      },
    ),
    run: releaseVersion,
  },
  'status-ready': {
    info: checkInfo(
      'status-ready',
      'The status file (JSON: {"status": "ready", "version": …}) says ready, with the expected version, and was written after the release (newerThan)',
      {
        type: 'object',
        additionalProperties: false,
        required: ['root'],
        properties: {
          root: ROOT,
          path: { type: 'string', default: 'status.json', description: 'The status file, relative to the grant' },
          version: { type: 'string', minLength: 1, description: 'The version the status must report, when given' },
          newerThan: { type: 'string', description: 'A file of the release (e.g. current/VERSION) the status file must not be older than, when given' },
        },
      },
    ),
    run: statusReady,
  },
};

export function describe() {
  return pluginInfo({
    name: 'js-file-checks',
    version: '0.1.0',
    description: "Readiness checks over a deployed release's files (version file, status file); written in JavaScript",
    checks: Object.values(CHECKS).map((c) => c.info),
  });
}

export function check(ctx, name) {
  const c = CHECKS[name];
  if (!c) throw `unknown check \`${name}\` (js-file-checks has ${Object.keys(CHECKS).join(', ')})`;
  return c.run(ctx, params(ctx));
}

export function operate(_ctx, op) {
  return notAnOperator(op);
}

export function install(_ctx, artifact) {
  return notAnInstaller(artifact);
}

export function partner(_ctx) {
  throw 'js-file-checks does not report the partner side';
}

/// The file's text, or undefined when nothing is there; host refusals (a
/// root not granted, a path leaving it) are the call's error.
function readIfThere(fs, path) {
  let meta;
  try {
    meta = fs.stat(path);
  } catch (e) {
    throw `${fs.root}/${path}: ${hostError(e)}`;
  }
  if (meta === undefined) return undefined;
  if (meta.kind !== 'file') throw `${fs.root}/${path} is a ${meta.kind}, not a file`;
  try {
    return fs.readText(path, 64 * 1024);
  } catch (e) {
    throw `${fs.root}/${path}: ${hostError(e)}`;
  }
}

function releaseVersion(ctx, p) {
  const fs = filesIn(files, requireString(p, 'root'));
  const path = p.path ?? 'current/VERSION';
  const expected = requireString(p, 'version');
  const text = readIfThere(fs, path);
  if (text === undefined) return fail(`no version file at ${fs.root}/${path}`, { path });
  const found = text.trim().split('\n')[0].trim();
  log.debug(`${ctx.request}: ${fs.root}/${path} says ${found}`);
  const obs = { path, version: found, expected };
  return found === expected
    ? pass(`${fs.root}/${path} says ${found}`, obs)
    : fail(`${fs.root}/${path} says ${found || '(empty)'}, expected ${expected}`, obs);
}

function statusReady(ctx, p) {
  const fs = filesIn(files, requireString(p, 'root'));
  const path = p.path ?? 'status.json';
  const text = readIfThere(fs, path);
  if (text === undefined) return inconclusive(`no status file at ${fs.root}/${path} yet`, { path });
  let status;
  try {
    status = JSON.parse(text);
  } catch (e) {
    return fail(`${fs.root}/${path} is not JSON: ${e.message}`, { path });
  }
  const obs = { path, status: status.status, version: status.version };
  if (status.status !== 'ready') return fail(`${fs.root}/${path} says ${JSON.stringify(status.status)}, not "ready"`, obs);
  if (p.version !== undefined && status.version !== p.version) {
    return fail(`${fs.root}/${path} reports version ${status.version}, expected ${p.version}`, obs);
  }
  if (p.newerThan !== undefined) {
    // A plugin gets no clock: fresh means written after the release was
    // deployed (a status left over from the previous release is stale).
    const mine = fs.stat(path);
    let theirs;
    try {
      theirs = fs.stat(p.newerThan);
    } catch (e) {
      throw `${fs.root}/${p.newerThan}: ${hostError(e)}`;
    }
    if (theirs === undefined) return fail(`no ${fs.root}/${p.newerThan} to compare the status with`, obs);
    obs['status-modified-ms'] = mine.modifiedMs;
    obs['release-modified-ms'] = theirs.modifiedMs;
    if (mine.modifiedMs < theirs.modifiedMs) {
      return fail(`${fs.root}/${path} is older than ${fs.root}/${p.newerThan}: stale status from before the release`, obs);
    }
  }
  log.debug(`${ctx.request}: ${fs.root}/${path} says ready`);
  return pass(`${fs.root}/${path} says ready (version ${status.version})`, obs);
}
