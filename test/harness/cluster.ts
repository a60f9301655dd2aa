// Multi-node helpers: several real node processes sharing one database and key prefix,
// and authenticated access to their peer port (inspection, routed asks).
import { Secret } from '../../core/secret.ts';
import type { NodeProcess } from '../../devenv/node-process.ts';
import { authHeaders, PEER_PATH } from '../../gateways/peer/protocol.ts';
import { TEST_SECRETS, startTestNode } from './nodes.ts';
import { freshClusterName, freshDatabase } from './services.ts';

export interface TestCluster {
  postgresUrl: string;
  valkeyUrl: string;
  clusterName: string;
  nodes: NodeProcess[];
  start(nodeId: string): Promise<NodeProcess>;
}

interface Tap {
  teardown(fn: () => unknown): void;
}

export async function startCluster(t: Tap, count: number, config: Record<string, any> = {}): Promise<TestCluster> {
  const postgresUrl = await freshDatabase(t);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const cluster: TestCluster = {
    postgresUrl,
    valkeyUrl,
    clusterName,
    nodes: [],
    async start(nodeId: string) {
      const node = await startTestNode(t, { postgresUrl, valkeyUrl, clusterName, nodeId, config });
      cluster.nodes.push(node);
      return node;
    },
  };
  const started = await Promise.all(Array.from({ length: count }, (_, i) => cluster.start(`node-${i + 1}`)));
  await Promise.all(started.map((n) => n.waitReady(60_000)));
  return cluster;
}

const secret = new Secret(TEST_SECRETS.clusterSecret);

function peerUrl(node: NodeProcess): string {
  return `http://${node.config.peer.bind}${PEER_PATH}`;
}

export interface NodeView {
  node: string;
  incarnation: string;
  membership: string;
  leaseHealthy: boolean;
  live: string[];
  actors: Array<{ kind: string; id: string; epoch: number }>;
}

export async function inspectNode(node: NodeProcess, timeoutMs = 2000): Promise<NodeView> {
  const res = await fetch(`${peerUrl(node)}/node`, { headers: authHeaders(secret, { node: 'test', incarnation: '0' }), signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`inspect ${node.proc.name}: HTTP ${res.status}`);
  return (await res.json()) as NodeView;
}

/** Sends a message into the cluster through `via`; returns the reply or the coded error. */
export async function askVia(node: NodeProcess, kind: string, id: string, msg: unknown, timeoutMs = 5000): Promise<{ status: number; body: any }> {
  const res = await fetch(`${peerUrl(node)}/ask`, {
    method: 'POST',
    headers: { ...authHeaders(secret, { node: 'test', incarnation: '0' }), 'content-type': 'application/json' },
    body: JSON.stringify({ kind, id, msg, timeoutMs }),
    signal: AbortSignal.timeout(timeoutMs + 10_000),
  });
  return { status: res.status, body: await res.json() };
}
