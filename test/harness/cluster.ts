// Multi-node helpers: several real node processes sharing one database and key prefix,
// and authenticated access to their peer port (inspection, routed asks).
import type { NodeProcess } from '../../devenv/node-process.ts';
import { readFileSync } from 'node:fs';
import { askVia as ask, inspectNode as inspect, servedTxt, type NodeView } from '../../devenv/peer-client.ts';
import { startTestNode } from './nodes.ts';
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

/** `perNode` adds config for the i-th node (e.g. its own loopback address for ingress). */
export async function startCluster(t: Tap, count: number, config: Record<string, any> = {}, perNode: (i: number) => Record<string, any> = () => ({}), env?: NodeJS.ProcessEnv): Promise<TestCluster> {
  const postgresUrl = await freshDatabase(t);
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const cluster: TestCluster = {
    postgresUrl,
    valkeyUrl,
    clusterName,
    nodes: [],
    async start(nodeId: string) {
      const i = Number(nodeId.replace(/\D/g, '')) - 1;
      const node = await startTestNode(t, { postgresUrl, valkeyUrl, clusterName, nodeId, config: { ...config, ...perNode(i) }, env });
      cluster.nodes.push(node);
      return node;
    },
  };
  const started = await Promise.all(Array.from({ length: count }, (_, i) => cluster.start(`node-${i + 1}`)));
  await Promise.all(started.map((n) => n.waitReady(60_000)));
  return cluster;
}

const target = (node: NodeProcess) => ({
  peer: String(node.config.peer.bind),
  nodeId: String(node.config.nodeId),
  clusterSecret: String(node.config.clusterSecret),
  ...(node.config.peer.tlsCa ? { ca: readFileSync(String(node.config.peer.tlsCa), 'utf8') } : {}),
});

export type { NodeView };

export const inspectNode = (node: NodeProcess, timeoutMs = 2000): Promise<NodeView> => inspect(target(node), timeoutMs);

/** Sends a message into the cluster through `node`; returns the reply or the coded error. */
export const askVia = (node: NodeProcess, kind: string, id: string, msg: unknown, timeoutMs = 5000) => ask(target(node), kind, id, msg, timeoutMs);

/** The TXT values `node`'s DNS serves at `name`, as its peers see them. */
export const servedTxtVia = (node: NodeProcess, name: string) => servedTxt(target(node), name);
