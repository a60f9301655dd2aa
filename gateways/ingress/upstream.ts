// The one way ingress reaches a target: choose it from the route in memory, then open a
// stream through this node's tunnel to its site, or forward the connection to the node that
// holds one, PROXY v2 header first so that node knows the client. TCP, UDP and HTTP share it.
import type { Duplex } from 'node:stream';
import { ClusterError } from '../../core/errors.ts';
import type { TunnelRegistry } from '../connector/tunnels.ts';
import { encodeProxyV2, type ProxyAddresses } from './proxy-protocol.ts';
import { pickWeighted, type Route, type RouteTarget } from './routes.ts';

export interface Placement {
  /** This node's id: a route naming it while no local tunnel exists is stale. */
  nodeId: string;
  /** True while a node holds a live lease (a route's owner may lag behind a death). */
  isLive(node: string): boolean;
  /** This node's fast view: `node` stopped answering (traffic avoids it while another choice exists). */
  isSuspected(node: string): boolean;
  /** Opens a forwarded stream to `node` for a target; the header goes first. */
  forward(node: string, resourceId: string, targetId: string, header: Buffer): Promise<Duplex>;
}

export type Choice = { target: RouteTarget; node: 'local' } | { target: RouteTarget; node: string };

/** What a tunnel has to know of the local side: which sites it reaches. */
export type Tunnels = Pick<TunnelRegistry, 'has' | 'open'>;

/**
 * Enabled, healthy targets only; local tunnels first (no extra hop), else a target whose
 * site's tunnel is on another live node, one this node does not suspect if there is such a
 * target (a suspected node is still tried when it is the only way). Decided from memory alone.
 */
export function chooseTarget(route: Route, tunnels: Pick<Tunnels, 'has'>, placement: Pick<Placement, 'nodeId' | 'isLive'> & Partial<Pick<Placement, 'isSuspected'>>, protocol: 'tcp' | 'udp', random = Math.random): Choice | undefined {
  const usable = route.targets.filter((t) => t.enabled && t.healthy && (protocol === 'udp' ? t.scheme === 'udp' : t.scheme !== 'udp'));
  const here = pickWeighted(usable.filter((t) => tunnels.has(t.siteId)), random);
  if (here) return { target: here, node: 'local' };
  const elsewhere = (siteId: string) => {
    const node = route.owners[siteId];
    return node !== undefined && node !== placement.nodeId && placement.isLive(node);
  };
  const reachable = usable.filter((t) => elsewhere(t.siteId));
  const answering = reachable.filter((t) => !placement.isSuspected?.(route.owners[t.siteId]!));
  const remote = pickWeighted(answering.length > 0 ? answering : reachable, random);
  return remote ? { target: remote, node: route.owners[remote.siteId]! } : undefined;
}

/** Chooses a target (or fails with CLUSTER_ERR_INGRESS_NO_TARGET) and says how to open it. */
export function pathTo(route: Route, deps: { tunnels: Tunnels; placement: Placement }, protocol: 'tcp' | 'udp'): { choice: Choice; open(client: ProxyAddresses): Promise<Duplex> } {
  const choice = chooseTarget(route, deps.tunnels, deps.placement, protocol);
  if (!choice) throw new ClusterError('CLUSTER_ERR_INGRESS_NO_TARGET', 'no enabled, healthy target on an online site', { resourceId: route.resourceId });
  const t = choice.target;
  return {
    choice,
    open: (client) =>
      choice.node === 'local' ? deps.tunnels.open(t.siteId, t, protocol) : deps.placement.forward(choice.node, route.resourceId, t.id, encodeProxyV2(client)),
  };
}
