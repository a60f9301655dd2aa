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
  /** `timeoutMs`: how long the other node may take to accept (shorter when there is another way). */
  forward(node: string, resourceId: string, targetId: string, header: Buffer, timeoutMs?: number): Promise<Duplex>;
}

export type Choice = { target: RouteTarget; node: 'local' } | { target: RouteTarget; node: string };

/** What a tunnel has to know of the local side: which sites it reaches. */
export type Tunnels = Pick<TunnelRegistry, 'has' | 'open'>;

/**
 * Enabled, healthy targets only; local tunnels first (no extra hop, a standby tunnel here
 * included), else the node holding a target's site: its owner, or, when the owner is dead or
 * this node suspects it, the node holding its standby tunnel. A suspected node is still tried
 * when it is the only way. Decided from memory alone.
 */
export function chooseTarget(route: Route, tunnels: Pick<Tunnels, 'has'>, placement: Pick<Placement, 'nodeId' | 'isLive'> & Partial<Pick<Placement, 'isSuspected'>>, protocol: 'tcp' | 'udp', random = Math.random): Choice | undefined {
  // The common case, one target whose site's tunnel is here: no arrays made per request.
  const only = route.targets.length === 1 ? route.targets[0]! : undefined;
  if (only && only.enabled && only.healthy && (protocol === 'udp') === (only.scheme === 'udp') && tunnels.has(only.siteId)) return { target: only, node: 'local' };
  const usable = route.targets.filter((t) => t.enabled && t.healthy && (protocol === 'udp' ? t.scheme === 'udp' : t.scheme !== 'udp'));
  const here = pickWeighted(usable.filter((t) => tunnels.has(t.siteId)), random);
  if (here) return { target: here, node: 'local' };
  const reachable = (node: string | undefined): node is string => node !== undefined && node !== placement.nodeId && placement.isLive(node);
  const answering = (node: string) => !placement.isSuspected?.(node);
  // Per target, the best way to its site and how good it is (0 best).
  const ways = usable.flatMap((t) => {
    const owner = route.owners[t.siteId];
    const standby = route.standbys?.[t.siteId];
    const options: Array<[string | undefined, boolean]> = [[owner, true], [standby, true], [owner, false], [standby, false]];
    const rank = options.findIndex(([node, mustAnswer]) => reachable(node) && (!mustAnswer || answering(node)));
    return rank < 0 ? [] : [{ target: t, node: options[rank]![0]!, rank }];
  });
  if (ways.length === 0) return undefined;
  const best = Math.min(...ways.map((w) => w.rank));
  const pick = pickWeighted(ways.filter((w) => w.rank === best).map((w) => w.target), random);
  return pick ? { target: pick, node: ways.find((w) => w.target === pick)!.node } : undefined;
}

/** The error when no enabled, healthy target of `route` is on an online site. */
export const noTarget = (route: Route) => new ClusterError('CLUSTER_ERR_INGRESS_NO_TARGET', 'no enabled, healthy target on an online site', { resourceId: route.resourceId });

/** Chooses a target (or fails with CLUSTER_ERR_INGRESS_NO_TARGET) and says how to open it. */
/** `raw`: a TCP resource's client stream, which may get a connection of its own through a local tunnel (TunnelRegistry.open). */
export function pathTo(route: Route, deps: { tunnels: Tunnels; placement: Placement }, protocol: 'tcp' | 'udp', raw = false): { choice: Choice; open(client: ProxyAddresses): Promise<Duplex> } {
  const choice = chooseTarget(route, deps.tunnels, deps.placement, protocol);
  if (!choice) throw noTarget(route);
  return { choice, open: opener(route, choice, deps, protocol, raw) };
}

/** How to open a stream to `choice`: through the local tunnel, or forwarded to its node (and, if that node does not accept quickly, to the site's other one). */
export function opener(route: Route, choice: Choice, deps: { tunnels: Tunnels; placement: Placement }, protocol: 'tcp' | 'udp', raw = false): (client: ProxyAddresses) => Promise<Duplex> {
  const t = choice.target;
  // The other way to the same site (its standby or owner), tried when the chosen node does not
  // accept quickly: a node that froze before this node suspected it.
  const other = choice.node === 'local' ? undefined : [route.owners[t.siteId], route.standbys?.[t.siteId]].find((n) => n !== undefined && n !== choice.node && n !== deps.placement.nodeId && deps.placement.isLive(n));
  return async (client) => {
    if (choice.node === 'local') return deps.tunnels.open(t.siteId, t, protocol, undefined, raw);
    const header = encodeProxyV2(client);
    if (!other) return deps.placement.forward(choice.node, route.resourceId, t.id, header);
    try {
      return await deps.placement.forward(choice.node, route.resourceId, t.id, header, FORWARD_WITH_FALLBACK_MS);
    } catch {
      return deps.placement.forward(other, route.resourceId, t.id, header);
    }
  };
}

/** How long a node may take to accept a forwarded connection when another way exists (on a LAN it takes milliseconds). */
const FORWARD_WITH_FALLBACK_MS = 750;
