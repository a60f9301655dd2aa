// `cluster up` (npm start): a local cluster to try things out. Starts PostgreSQL, Valkey and
// Pebble with data under .data/ (kept across restarts; --fresh wipes it), then a node, and
// prints where it answers. Ctrl-C or SIGTERM stops everything it started, in reverse order.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NodeProcess } from '../devenv/node-process.ts';
import { freePort } from '../devenv/ports.ts';
import { startLocalServices } from '../devenv/services.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface LocalSecrets {
  clusterSecret: string;
  encryptionKey: string;
}

/** Secrets of the local cluster, made once and kept with its data (mode 0600). */
function localSecrets(dataDir: string): LocalSecrets {
  const file = join(dataDir, 'secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as LocalSecrets;
  const secrets = { clusterSecret: randomBytes(32).toString('base64url'), encryptionKey: randomBytes(32).toString('base64') };
  writeFileSync(file, JSON.stringify(secrets), { mode: 0o600 });
  return secrets;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

export async function up(opts: { fresh: boolean }): Promise<void> {
  const dataDir = join(ROOT, '.data');
  if (opts.fresh) rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  const t0 = Date.now();
  say('starting local services (data in .data/)');
  const services = await startLocalServices({
    dataDir,
    pebble: true,
    persistent: true,
    onReady: (name, ms) => say(`  ${name.padEnd(10)} ready in ${ms} ms`),
  });
  const nodes: NodeProcess[] = [];
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nstopping');
    for (const n of nodes.reverse()) await n.proc.stop('SIGTERM', 20_000);
    say('  nodes stopped');
    await services.stop();
    say('  services stopped');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  try {
    const secrets = localSecrets(dataDir);
    const host = '127.0.0.11';
    const adminPort = 8080;
    const node = new NodeProcess({
      name: 'node-1',
      configFile: join(dataDir, 'node-1.yaml'),
      logFile: join(dataDir, 'node-1.log'),
      env: { NODE_EXTRA_CA_CERTS: services.pebble!.caFile },
      config: {
        nodeId: 'node-1',
        clusterName: 'local',
        clusterSecret: secrets.clusterSecret,
        encryptionKey: secrets.encryptionKey,
        postgres: { url: services.postgres!.url },
        valkey: { url: services.valkey!.url },
        admin: { bind: `${host}:${adminPort}` },
        ingress: { http: `${host}:${await freePort(host)}`, https: `${host}:${await freePort(host)}`, publicAddresses: [host] },
        dns: { bind: `${host}:${await freePort(host)}` },
        peer: { bind: `${host}:${await freePort(host)}` },
        acme: { directoryUrl: services.pebble!.directoryUrl },
        shutdown: { drainDelay: '500ms' },
      },
    });
    nodes.push(node);
    const tn = Date.now();
    await node.waitReady(60_000);
    say(`  ${'node-1'.padEnd(10)} ready in ${Date.now() - tn} ms`);
    say(`\ncluster up in ${Date.now() - t0} ms`);
    say(`  node-1   ${node.adminUrl}  (health: ${node.adminUrl}/healthz, readiness: ${node.adminUrl}/readyz)`);
    say(`  logs     .data/node-1.log`);
    say(`  postgres ${services.postgres!.url}`);
    say(`  valkey   ${services.valkey!.url}`);
    say(`  acme     ${services.pebble!.directoryUrl}`);
    // First start: the node printed its one-time setup token on its console (its log file here).
    const token = /one-time setup token:\s+(\S+)/.exec(readFileSync(node.logFile, 'utf8'))?.[1];
    if (token) say(`\nfirst start: create the admin with\n  curl -X POST ${node.adminUrl}/api/v1/auth/setup -H 'content-type: application/json' \\\n    -d '{"token":"${token}","email":"you@example.com","password":"at least 12 characters"}'`);
    say(`\ntry: curl ${node.adminUrl}/readyz`);
    say('Ctrl-C stops everything.');
    const exit = await node.proc.exited;
    if (!stopping) {
      say(`node-1 exited unexpectedly (${exit.code ?? exit.signal}); see .data/node-1.log`);
      await stop(1);
    }
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    await stop(1);
  }
}
