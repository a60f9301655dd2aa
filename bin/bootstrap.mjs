#!/usr/bin/env node
// Bootstrap for a fresh machine: runs before `npm start` and `npm test`.
// Uses only Node built-ins, because node_modules may not exist yet.
//
// 1. System packages (PostgreSQL, Valkey, Pebble, WireGuard userspace, haproxy, dig, chromium):
//    installed with apt when running as root, else the exact command is printed.
//    Valkey lives in Debian's bookworm-backports suite, which is added to the machine's
//    existing Debian sources entry (the mirror is never named here: we reuse whatever
//    URI the machine already has).
// 2. node_modules: `npm ci` when missing or older than package-lock.json.
// 3. tap's runner is rebuilt when our plugin list changed (tap 21 + TypeScript 7 need the
//    TypeScript plugin removed; tsx loads the sources instead).
// 4. The dashboard (ui/) is built into ui/dist when missing or older than its sources.
// 5. The DNS gateway's batched UDP socket (a small C module) is built when stale.
// 6. The bundle the `cluster` command runs (bin/build.mjs) is built when stale, so nodes that
//    start together find it ready.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync, statSync, accessSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg) => process.stderr.write(`bootstrap: ${msg}\n`);

/** Binary we look for -> Debian package that provides it. */
const SYSTEM_PACKAGES = [
  ['/usr/lib/postgresql/15/bin/initdb', 'postgresql'],
  ['valkey-server', 'valkey-server'],
  ['pebble', 'pebble'],
  ['pebble-challtestsrv', 'pebble'],
  ['wireguard-go', 'wireguard-go'],
  ['wg', 'wireguard-tools'],
  ['haproxy', 'haproxy'],
  ['dig', 'dnsutils'],
  ['dnsperf', 'dnsperf'], // bench:dns
  ['/usr/sbin/nsd', 'nsd'], // bench:dns compares against it
  ['ip', 'iproute2'],
  ['/usr/sbin/nft', 'nftables'], // the WireGuard test blocks UDP inside a namespace
  ['setpriv', 'util-linux'], // wireguard-go runs with a parent-death signal
  ['openssl', 'openssl'],
  ['/usr/bin/chromium', 'chromium'], // browser tests (driven by playwright-core; no browser download)
  ['perf', 'linux-perf'], // BENCH_PERF: CPU-time profiles of a benchmark's phases (bench/perf-top.ts)
];
const BACKPORTS_ONLY = new Set(['valkey-server']);

function onPath(bin) {
  if (bin.startsWith('/')) return existsSync(bin);
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin'])) {
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

function missingPackages() {
  const missing = new Set();
  for (const [bin, pkg] of SYSTEM_PACKAGES) if (!onPath(bin)) missing.add(pkg);
  return [...missing];
}

function debianCodename() {
  const osRelease = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  return /^VERSION_CODENAME=(\S+)/m.exec(osRelease)?.[1] ?? 'bookworm';
}

/**
 * Adds `<codename>-backports` to the machine's own Debian entry. deb822 sources get the
 * suite appended to the stanza that carries `<codename>`; one-line sources get a copy of
 * the main line with the backports suite. Returns true when something was changed.
 */
function ensureBackports() {
  const codename = debianCodename();
  const suite = `${codename}-backports`;
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  if (existsSync(deb822)) {
    const text = readFileSync(deb822, 'utf8');
    if (text.includes(suite)) return false;
    const stanzas = text.split(/\n\s*\n/);
    let changed = false;
    const out = stanzas.map((stanza) => {
      const m = /^Suites:(.*)$/m.exec(stanza);
      if (changed || !m || !m[1].split(/\s+/).includes(codename)) return stanza;
      changed = true;
      return stanza.replace(/^Suites:(.*)$/m, `Suites:${m[1]} ${suite}`);
    });
    if (changed) {
      writeFileSync(deb822, out.join('\n\n'));
      log(`added ${suite} to ${deb822}`);
      return true;
    }
  }
  const list = '/etc/apt/sources.list';
  if (existsSync(list)) {
    const text = readFileSync(list, 'utf8');
    if (text.includes(suite)) return false;
    const line = text.split('\n').find((l) => new RegExp(`^deb\\s+\\S+\\s+${codename}\\s`).test(l));
    if (line) {
      writeFileSync(list, `${text.trimEnd()}\n${line.replace(` ${codename} `, ` ${suite} `)}\n`);
      log(`added ${suite} to ${list}`);
      return true;
    }
  }
  throw new Error(`bootstrap: found no Debian ${codename} source entry to add ${suite} to`);
}

function installSystemPackages() {
  const missing = missingPackages();
  if (missing.length === 0) return;
  const command = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    log(`missing system packages: ${missing.join(', ')}`);
    log(`run as root: add ${debianCodename()}-backports to your Debian sources, then`);
    log(`  apt-get update && ${command}`);
    process.exit(1);
  }
  if (missing.some((p) => BACKPORTS_ONLY.has(p))) ensureBackports();
  log(`installing ${missing.join(', ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  // Debian starts a cluster-wide PostgreSQL, Valkey and NSD on install; we run our own, throwaway
  // (and a system NSD on *:53 would take the port our nodes' DNS binds on loopback addresses).
  for (const unit of ['postgresql', 'valkey-server', 'nsd']) {
    spawnSync('service', [unit, 'stop'], { stdio: 'ignore' });
  }
  const still = missingPackages();
  if (still.length) throw new Error(`bootstrap: still missing after install: ${still.join(', ')}`);
}

function installNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return false;
  log('installing node modules (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  return true;
}

function buildTapRunner(force) {
  // tap compiles its plugin list into its runner; rebuild when that list is not ours.
  const stamp = join(root, 'node_modules', '.tap-plugins');
  const want = JSON.stringify(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).tap?.plugin ?? []);
  if (!force && existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return;
  log('building tap runner for our plugin list');
  execFileSync(join(root, 'node_modules', '.bin', 'tap'), ['build'], { cwd: root, stdio: 'inherit' });
  writeFileSync(stamp, want);
}

/** Newest modification time under a directory (or of a file). */
function newest(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(path).map((f) => newest(join(path, f))));
}

function buildDashboard(force) {
  // Every node serves ui/dist; build it when it is missing or older than its sources.
  const built = join(root, 'ui', 'dist', 'index.html');
  const sources = Math.max(newest(join(root, 'ui', 'src')), newest(join(root, 'ui', 'index.html')), newest(join(root, 'ui', 'vite.config.ts')), newest(join(root, 'package-lock.json')));
  if (!force && existsSync(built) && statSync(built).mtimeMs >= sources) return;
  log('building the dashboard (vite build)');
  execFileSync(join(root, 'node_modules', '.bin', 'vite'), ['build', '--config', join(root, 'ui', 'vite.config.ts')], { cwd: root, stdio: 'inherit' });
}

function buildNative() {
  // Two small C modules against Node's own headers, built when missing or older than their
  // sources: the DNS gateway's batched UDP socket (gateways/dns/native) and the tunnel's
  // kernel relay of raw TCP streams (core/native). Without them everything still works, at
  // more CPU (DNS through Node dgram, about twice per answer; bulk TCP streams copied through
  // the relays, about half the throughput): say so, do not stop.
  if (process.platform !== 'linux') return;
  const modules = [
    [join(root, 'gateways', 'dns', 'native'), 'udp_batch'],
    [join(root, 'core', 'native'), 'splice_relay'],
  ];
  const stale = modules.some(([dir, name]) => {
    const built = join(dir, 'build', 'Release', `${name}.node`);
    return !existsSync(built) || statSync(built).mtimeMs < Math.max(newest(join(dir, `${name}.c`)), newest(join(dir, 'binding.gyp')));
  });
  if (!stale) return;
  log('building the native modules (npm run native:build): batched DNS socket, splice relay');
  const r = spawnSync('npm', ['run', '--silent', 'native:build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) log('WARNING: the native modules did not build; DNS answers UDP through Node dgram at about twice the CPU per answer, and raw TCP streams are copied through the relays at about half the bulk throughput (needs make, g++ and Node\'s headers: see the README, DNS)');
}

try {
  if (process.env.BOOTSTRAP_SKIP_SYSTEM !== '1') installSystemPackages();
  const installed = installNodeModules();
  buildTapRunner(installed);
  buildDashboard(installed);
  buildNative();
  // node_modules exists by now: esbuild can be loaded.
  await (await import('./build.mjs')).freshBundle();
} catch (err) {
  log(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
