import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
