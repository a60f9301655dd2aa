// Real `cluster node` processes for tests. Each gets a config with fresh loopback ports and
// the test's own database and key prefix; teardown SIGKILLs whatever is still running.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeProcess } from '../../devenv/node-process.ts';

export interface TestNodeOptions {
  postgresUrl: string;
  valkeyUrl: string;
  clusterName: string;
  nodeId?: string;
  /** Merged over the generated config (sections are merged one level deep). */
  config?: Record<string, any>;
  env?: NodeJS.ProcessEnv;
}

interface Teardown {
  teardown(fn: () => unknown): void;
  /** tap's: false once an assertion of the test failed. */
  passing?(): boolean;
}

/** The last warnings and errors of a node's log, for a failed test's output (CI keeps nothing else). */
function logTail(logFile: string, lines = 25): string {
  if (!existsSync(logFile)) return '';
  return readFileSync(logFile, 'utf8').split('\n').filter((l) => /^\{"level":(4|5|6)0,/.test(l)).slice(-lines).map((l) => `  ${l.slice(0, 400)}`).join('\n');
}

export const TEST_SECRETS = {
  clusterSecret: 'test-cluster-secret-0123456789abcdefghijklmnop',
  encryptionKey: randomBytes(32).toString('base64'),
};

/**
 * A loopback address of its own for one node (any 127/8 address binds without setup), so its
 * listeners use fixed ports and can never collide with another node's, or with an ephemeral
 * port some other process grabbed.
 */
export function nodeAddress(): string {
  const r = (n: number) => Math.floor(Math.random() * n);
  return `127.${1 + r(254)}.${r(256)}.${1 + r(254)}`;
}

export async function testNodeConfig(opts: TestNodeOptions): Promise<Record<string, any>> {
  const host = nodeAddress();
  const base: Record<string, any> = {
    nodeId: opts.nodeId ?? 'node-1',
    clusterName: opts.clusterName,
    ...TEST_SECRETS,
    postgres: { url: opts.postgresUrl, connectTimeout: '2s' },
    valkey: { url: opts.valkeyUrl, connectTimeout: '1s', commandTimeout: '1s' },
    admin: { bind: `${host}:8080` },
    ingress: { http: `${host}:80`, https: `${host}:443`, publicAddresses: [host] },
    dns: { bind: `${host}:53` },
    peer: { bind: `${host}:7946` },
    metrics: { bind: `${host}:9464` },
    health: { probeInterval: '250ms', probeTimeout: '500ms' },
    // Off unless a test turns it on (with machine-unique interface names and ports).
    wireguard: { enabled: false },
    shutdown: { drainDelay: '0ms', timeout: '10s' },
    log: { level: 'info' },
  };
  for (const [k, v] of Object.entries(opts.config ?? {})) {
    base[k] = v && typeof v === 'object' && !Array.isArray(v) && typeof base[k] === 'object' ? { ...base[k], ...v } : v;
  }
  return base;
}

export async function startTestNode(t: Teardown, opts: TestNodeOptions): Promise<NodeProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'cluster-node-'));
  const config = await testNodeConfig(opts);
  const logFile = join(dir, 'node.log');
  const node = new NodeProcess({ name: String(config.nodeId), config, configFile: join(dir, 'node.yaml'), logFile, env: opts.env });
  t.teardown(async () => {
    await node.proc.stop('SIGKILL', 1000);
    if (t.passing && !t.passing()) process.stderr.write(`# ${config.nodeId}: last warnings and errors of its log\n${logTail(logFile)}\n`);
    if (process.env.KEEP_NODE_LOGS) process.stderr.write(`node logs kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  });
  return node;
}
