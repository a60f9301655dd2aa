import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import t from 'tap';
import { isListening } from '../../devenv/ports.ts';
import { startLocalServices } from '../../devenv/services.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function getJson(url: string, ca: Buffer): Promise<any> {
  return new Promise((resolve, reject) => {
    request(url, { ca }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject).end();
  });
}

t.test('the services manager starts PostgreSQL, Valkey and Pebble ready to use, and stops them all', async (t) => {
  const s = await startLocalServices({ pebble: true });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : s.stop()));
  const c = new pg.Client({ connectionString: s.postgres!.url });
  await c.connect();
  t.equal((await c.query('SHOW server_version_num')).rows[0].server_version_num.slice(0, 2), '15');
  await c.end();
  t.ok(await isListening('127.0.0.1', s.valkey!.port));
  // Neither trusts a local connection without its password (a local user could otherwise
  // write a session into Valkey and become server admin).
  const noPassword = new URL(s.postgres!.url);
  noPassword.password = '';
  const anonymous = new pg.Client({ connectionString: noPassword.toString() });
  await t.rejects(anonymous.connect(), /password/, 'PostgreSQL asks for the password');
  await anonymous.end().catch(() => {});
  const noAuth = new Redis(s.valkey!.url.replace(/\/\/:[^@]*@/, '//'), { lazyConnect: true, maxRetriesPerRequest: 0 });
  await noAuth.connect().catch(() => {});
  await t.rejects(noAuth.set('x', '1'), /NOAUTH/, 'Valkey refuses commands without it');
  noAuth.disconnect();
  const withAuth = new Redis(s.valkey!.url, { lazyConnect: true });
  await withAuth.connect();
  t.equal(await withAuth.ping(), 'PONG', 'and works with it');
  withAuth.disconnect();
  t.notMatch(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }), new RegExp(decodeURIComponent(new URL(s.valkey!.url).password)), 'no password on a command line');
  const dir = await getJson(s.pebble!.directoryUrl, readFileSync(s.pebble!.caFile));
  t.match(dir, { newNonce: /^https:/, newAccount: /^https:/, newOrder: /^https:/ }, 'Pebble serves an ACME directory over HTTPS trusted via caFile');
  t.match(await s.pebble!.issuedRoot(), /BEGIN CERTIFICATE/);

  const ports = [s.postgres!.port, s.valkey!.port, s.pebble!.port];
  await s.stop();
  stopped = true;
  for (const port of ports) t.notOk(await isListening('127.0.0.1', port), `port ${port} closed`);
});

t.test('services outlive nothing: SIGKILL of the process that started them takes them down', async (t) => {
  const fixture = fileURLToPath(new URL('./fixtures/hold-services.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import=tsx', fixture], { stdio: ['ignore', 'pipe', 'inherit'] });
  const info = await new Promise<{ pids: number[]; ports: number[] }>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(JSON.parse(out));
    });
    child.on('exit', (code) => reject(new Error(`fixture exited ${code}`)));
  });
  t.ok(info.pids.length >= 4, `children: ${info.pids.join(', ')}`);
  t.ok(info.pids.every(alive));
  child.kill('SIGKILL');
  const deadline = Date.now() + 10_000;
  while (info.pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.same(info.pids.filter(alive), [], 'every service process is gone');
  for (const port of info.ports) t.notOk(await isListening('127.0.0.1', port), `port ${port} closed`);
});

t.test('a service whose port is taken fails with a coded error instead of reporting the other server as ready', async (t) => {
  const s = await startLocalServices({ postgres: false, pebble: false });
  t.teardown(() => s.stop());
  // Valkey on a port that is already taken fails during start-up.
  const { LocalValkey } = await import('../../devenv/valkey.ts');
  await t.rejects(LocalValkey.start({ dir: t.testdir(), port: s.valkey!.port }), { code: 'CLUSTER_ERR_LOCAL_SERVICE_FAILED', fields: { service: 'valkey' } });
});

t.test('PostgreSQL under a directory its user cannot reach fails naming the directory and the fix', { skip: process.getuid?.() !== 0 ? 'only root hands PostgreSQL to the postgres user' : false }, async (t) => {
  const closed = mkdtempSync(join(tmpdir(), 'closed-')); // mode 0700, like /root
  t.teardown(() => rmSync(closed, { recursive: true, force: true }));
  const { LocalPostgres } = await import('../../devenv/postgres.ts');
  await t.rejects(LocalPostgres.start({ dir: join(closed, 'data', 'postgres') }), { code: 'CLUSTER_ERR_LOCAL_SERVICE_FAILED', message: new RegExp(`${closed} is not searchable by it\\. Run \`chmod o\\+x ${closed}\``) });
  t.notOk(existsSync(join(closed, 'data', 'postgres', 'data')), 'no half-made cluster left behind');
});
