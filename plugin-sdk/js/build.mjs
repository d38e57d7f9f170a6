#!/usr/bin/env node
// Builds a JavaScript Duplex plugin project to a WebAssembly component, offline,
// with componentize-js (installed by scripts/install-plugin-toolchain-js.sh).
//
//   node build.mjs PROJECT_DIR --out FILE.wasm [--toolchain DIR]
//
// PROJECT_DIR/package.json names the module and the world:
//   "duplex": { "main": "src/plugin.js", "world": "acme-checks" }
// and, when the plugin imports modules from outside PROJECT_DIR, the directory
// that holds them all ("root", relative to PROJECT_DIR; default "."):
// componentize-js 0.23.0 lets the module see only the current directory (when
// it holds the module) or the module's own directory, so the build runs there.
// PROJECT_DIR/wit/ holds the plugin's own WIT world (it imports only the
// duplex:plugin interfaces the plugin uses: the runner refuses a plugin that
// imports a capability its policy does not grant). The contract,
// duplex:plugin@0.1.0, is this SDK's ../wit/plugin.wit: it is put under the
// world's deps/ in a temporary directory, so the project never holds a copy.
//
// The component imports nothing else: WASI's random, stdio, clocks and http
// are disabled (no Math.random, console, Date.now or fetch in a plugin; a
// plugin gets no clock, it counts calls instead). The toolchain directory is
// --toolchain, else $DUPLEX_TOOLCHAINS/js, else ~/.cache/duplex/toolchains/js.
import { mkdtemp, readFile, writeFile, mkdir, copyFile, readdir, rm, stat } from 'node:fs/promises';
import { join, dirname, resolve } from 'node:path';
import { tmpdir, homedir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const CONTRACT = join(here, '..', 'wit', 'plugin.wit');
const INSTALL = 'scripts/install-plugin-toolchain-js.sh';

function die(message, code = 1) {
  process.stderr.write(`duplex-js-build: ${message}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const args = { project: undefined, out: undefined, toolchain: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out' || a === '-o') args.out = argv[++i];
    else if (a === '--toolchain') args.toolchain = argv[++i];
    else if (a.startsWith('-')) die(`unknown option ${a}`, 2);
    else if (args.project === undefined) args.project = a;
    else die(`unexpected argument ${a}`, 2);
  }
  if (!args.project || !args.out) die('usage: node build.mjs PROJECT_DIR --out FILE.wasm [--toolchain DIR]', 2);
  args.toolchain ??= join(process.env.DUPLEX_TOOLCHAINS || join(homedir(), '.cache', 'duplex', 'toolchains'), 'js');
  return args;
}

async function copyTree(from, to) {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (e.isDirectory()) await copyTree(join(from, e.name), join(to, e.name));
    else if (e.isFile()) await copyFile(join(from, e.name), join(to, e.name));
  }
}

const args = parseArgs(process.argv.slice(2));
const project = resolve(args.project);
let manifest;
try {
  manifest = JSON.parse(await readFile(join(project, 'package.json'), 'utf8'));
} catch (e) {
  die(`${join(project, 'package.json')}: ${e.message}`, 2);
}
const cfg = manifest.duplex;
if (!cfg || typeof cfg.main !== 'string' || typeof cfg.world !== 'string') {
  die(`${join(project, 'package.json')}: needs "duplex": { "main": "src/plugin.js", "world": "NAME" }`, 2);
}

const entry = join(args.toolchain, 'node_modules', '@bytecodealliance', 'componentize-js', 'src', 'componentize.js');
try {
  await stat(entry);
} catch {
  die(`no componentize-js in ${args.toolchain}: install it with ${INSTALL} (from a Duplex checkout) or\n` +
    `    npm install --prefix ${args.toolchain} @bytecodealliance/componentize-js@0.23.0 @bytecodealliance/jco@1.35.0`);
}
const { componentize } = await import(pathToFileURL(entry).href);

const root = resolve(project, typeof cfg.root === 'string' ? cfg.root : '.');
if (root === '/' || !resolve(project, cfg.main).startsWith(root + '/')) {
  die(`${join(project, 'package.json')}: "duplex.root" (${root}) must be a directory, not /, that holds ${cfg.main}`, 2);
}
process.chdir(root);

const wit = await mkdtemp(join(tmpdir(), 'duplex-js-wit-'));
try {
  await copyTree(join(project, 'wit'), wit);
  await mkdir(join(wit, 'deps', 'duplex-plugin'), { recursive: true });
  await copyFile(CONTRACT, join(wit, 'deps', 'duplex-plugin', 'plugin.wit'));
  const { component } = await componentize({
    sourcePath: join(project, cfg.main),
    witPath: wit,
    worldName: cfg.world,
    disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
  });
  await mkdir(dirname(resolve(args.out)), { recursive: true });
  await writeFile(args.out, component);
} catch (e) {
  die(`${project}: ${e && e.message ? e.message : e}`);
} finally {
  await rm(wit, { recursive: true, force: true });
}
