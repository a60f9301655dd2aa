// The control socket of `cluster up`: a Unix socket in the data directory through which
// `cluster chaos` (and an operator, with any JSON-lines client) asks the launcher, which owns
// the node processes, to signal and restart them. One JSON request per line, one JSON reply.
// The socket is mode 0600: whoever can use it can kill the local cluster.
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { ErrorCode } from '../core/errors.ts';

/** Where `cluster up` keeps its data (and this socket) unless told `--data-dir`. */
export const DEFAULT_DATA_DIR = join(fileURLToPath(new URL('..', import.meta.url)), '.data');

export const ControlRequest = z.discriminatedUnion('op', [
  z.object({ op: z.literal('info') }),
  z.object({ op: z.literal('signal'), node: z.string().min(1).max(64), signal: z.enum(['SIGKILL', 'SIGSTOP', 'SIGCONT', 'SIGTERM']) }),
  /** Starts a node that is not running (waiting for a dying one to exit) and answers once it is ready. */
  z.object({ op: z.literal('start'), node: z.string().min(1).max(64) }),
  /** Resolves once the node's process has exited. */
  z.object({ op: z.literal('wait-exit'), node: z.string().min(1).max(64) }),
  /** With --valkey-replica: SIGKILL the Valkey server Sentinel names primary now; answers its port. */
  z.object({ op: z.literal('valkey-kill') }),
  /** Starts the killed Valkey server again (Sentinel makes it a replica of the new primary). */
  z.object({ op: z.literal('valkey-start') }),
  /** With --netns: drop packets inside a host's namespace (a node, "postgres" or "valkey"): all, from/to `from`, or what it sends. */
  z.object({
    op: z.literal('net-fault'),
    host: z.string().min(1).max(64),
    fault: z.enum(['isolate', 'cut', 'one-way', 'loss']),
    from: z.array(z.string().min(1).max(64)).max(16).optional(),
    share: z.number().min(0).max(100).optional(),
  }),
  /** With --netns: takes every fault off the host. */
  z.object({ op: z.literal('net-heal'), host: z.string().min(1).max(64) }),
]);
export type ControlRequest = z.infer<typeof ControlRequest>;

export interface NodeInfo {
  id: string;
  ip: string;
  pid: number;
  alive: boolean;
  admin: string;
  peer: string;
  dns: string;
}

/** What a tool needs to reach the local cluster (no secrets: those stay in secrets.json). */
export interface ClusterInfo {
  nodes: NodeInfo[];
  adminUrl: string;
  postgresUrl: string;
  hostname: string;
  caFile: string;
  /** Started with --valkey-replica: a primary, a replica and three Sentinels. */
  valkeyReplica?: boolean;
  /** The nodes' lease.ttl: a node cut off from Valkey for longer must have fenced itself. */
  leaseTtlMs?: number;
  /** Started with --netns: each host's address, and the checker's own (no fault drops it). */
  netns?: { observer: string; hosts: Record<string, string> };
}

export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

export async function serveControl(path: string, handle: ControlHandler): Promise<Server> {
  if (existsSync(path)) {
    if (await controlAlive(path)) throw new Error(`another \`cluster up\` is running with this data directory (${path} answers)`);
    rmSync(path, { force: true }); // left by a launcher that was killed
  }
  const server = createServer((sock) => {
    let buf = '';
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf += d;
      if (buf.length > 64 * 1024) return sock.destroy();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void answer(line).then((reply) => sock.writable && sock.write(`${JSON.stringify(reply)}\n`));
      }
    });
  });
  const answer = async (line: string) => {
    let req: ControlRequest;
    try {
      req = ControlRequest.parse(JSON.parse(line));
    } catch (err) {
      return { ok: false, code: 'CLUSTER_ERR_CONTROL_BAD_REQUEST' satisfies ErrorCode, error: err instanceof z.ZodError ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : 'not JSON' };
    }
    try {
      return { ok: true, value: await handle(req) };
    } catch (err) {
      return { ok: false, code: 'CLUSTER_ERR_CONTROL_FAILED' satisfies ErrorCode, error: (err as Error).message };
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

async function controlAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection(path, () => {
      sock.destroy();
      resolve(true);
    });
    sock.on('error', () => resolve(false));
  });
}

/** One request to a launcher's control socket. */
export async function controlCall<T = unknown>(path: string, req: ControlRequest, timeoutMs = 90_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => sock.destroy(new Error(`control ${req.op}: no answer in ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const reply = JSON.parse(buf.slice(0, nl)) as { ok: boolean; value?: T; code?: string; error?: string };
      if (reply.ok) resolve(reply.value as T);
      else reject(new Error(`${reply.code}: ${reply.error}`));
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the launcher at ${path} (is \`cluster up\` running with this data directory?): ${err.message}`));
    });
  });
}
