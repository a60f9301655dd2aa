// Real `cluster node` processes for tests. Each gets a config with fresh loopback ports and
// the test's own database and key prefix; teardown SIGKILLs whatever is still running.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeProcess } from '../../devenv/node-process.ts';
import { freePort } from '../../devenv/ports.ts';

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
}

export const TEST_SECRETS = {
  clusterSecret: 'test-cluster-secret-0123456789abcdefghijklmnop',
  encryptionKey: randomBytes(32).toString('base64'),
};

export async function testNodeConfig(opts: TestNodeOptions): Promise<Record<string, any>> {
  const host = '127.0.0.1';
  const port = async () => `${host}:${await freePort(host)}`;
  const base: Record<string, any> = {
    nodeId: opts.nodeId ?? 'node-1',
    clusterName: opts.clusterName,
    ...TEST_SECRETS,
    postgres: { url: opts.postgresUrl, connectTimeout: '2s' },
    valkey: { url: opts.valkeyUrl, connectTimeout: '1s', commandTimeout: '1s' },
    admin: { bind: await port() },
    ingress: { http: await port(), https: await port(), publicAddresses: [host] },
    dns: { bind: await port() },
    peer: { bind: await port() },
    health: { probeInterval: '250ms', probeTimeout: '500ms' },
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
    rmSync(dir, { recursive: true, force: true });
  });
  return node;
}
