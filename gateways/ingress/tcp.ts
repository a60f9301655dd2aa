// Raw TCP resources: every node listens on each enabled TCP resource's port. A client
// connection goes through a local tunnel when one of the resource's sites is connected here;
// otherwise it is forwarded over the peer link to the node that holds a tunnel, with a PROXY
// protocol v2 header so that node knows the client's address.
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import type { Logger } from '../../core/log.ts';
import type { TunnelRegistry } from '../connector/tunnels.ts';
import { encodeProxyV2 } from './proxy-protocol.ts';
import { pickWeighted, type Route, type RouteTable, type RouteTarget } from './routes.ts';

export interface Placement {
  /** This node's id: a route naming it while no local tunnel exists is stale. */
  nodeId: string;
  /** True while a node holds a live lease (a route's owner may lag behind a death). */
  isLive(node: string): boolean;
  /** Opens a forwarded stream to `node` for a target; the header goes first. */
  forward(node: string, resourceId: string, targetId: string, header: Buffer): Promise<Duplex>;
}

export type Choice = { target: RouteTarget; node: 'local' } | { target: RouteTarget; node: string };

/**
 * Enabled, healthy targets only; local tunnels first (no extra hop), else a target whose
 * site's tunnel is on another live node. Decided from memory alone.
 */
export function chooseTarget(route: Route, tunnels: TunnelRegistry, placement: Placement, protocol: 'tcp' | 'udp'): Choice | undefined {
  const usable = route.targets.filter((t) => t.enabled && t.healthy && (protocol === 'udp' ? t.scheme === 'udp' : t.scheme !== 'udp'));
  const here = pickWeighted(usable.filter((t) => tunnels.has(t.siteId)));
  if (here) return { target: here, node: 'local' };
  const elsewhere = (siteId: string) => {
    const node = route.owners[siteId];
    return node !== undefined && node !== placement.nodeId && placement.isLive(node);
  };
  const remote = pickWeighted(usable.filter((t) => elsewhere(t.siteId)));
  return remote ? { target: remote, node: route.owners[remote.siteId]! } : undefined;
}

export class TcpIngress {
  readonly #servers = new Map<number, { server: Server; resourceId: string }>();
  readonly #log: Logger;

  constructor(
    private readonly deps: { routes: RouteTable; tunnels: TunnelRegistry; placement: Placement; bindHost: string; logger: Logger },
  ) {
    this.#log = deps.logger.child({ component: 'ingress-tcp' });
    deps.routes.on('updated', () => this.sync());
  }

  /** Opens listeners for enabled TCP resources and closes the rest. */
  sync() {
    const want = new Map(this.deps.routes.all().filter((r) => r.protocol === 'tcp' && r.enabled && r.port).map((r) => [r.port!, r.resourceId]));
    for (const [port, entry] of this.#servers) {
      if (want.get(port) !== entry.resourceId) {
        entry.server.close();
        this.#servers.delete(port);
      }
    }
    for (const [port, resourceId] of want) {
      if (this.#servers.has(port)) continue;
      const server = createServer((sock) => void this.#serve(sock, resourceId));
      server.on('error', (err) => this.#log.error({ port, resourceId, err: err.message }, 'cannot listen for a TCP resource'));
      server.listen(port, this.deps.bindHost);
      this.#servers.set(port, { server, resourceId });
    }
  }

  async #serve(sock: Socket, resourceId: string) {
    sock.on('error', () => {});
    sock.pause();
    const route = this.deps.routes.byId(resourceId);
    try {
      if (!route) throw new Error('resource gone');
      const choice = chooseTarget(route, this.deps.tunnels, this.deps.placement, 'tcp');
      if (!choice) throw new Error('CLUSTER_ERR_INGRESS_NO_TARGET');
      const upstream =
        choice.node === 'local'
          ? await this.deps.tunnels.open(choice.target.siteId, choice.target, 'tcp')
          : await this.deps.placement.forward(choice.node, resourceId, choice.target.id, encodeProxyV2({
              source: { address: sock.remoteAddress ?? '0.0.0.0', port: sock.remotePort ?? 0 },
              destination: { address: sock.localAddress ?? '0.0.0.0', port: sock.localPort ?? 0 },
            }));
      sock.setNoDelay(true);
      pipeline(sock, upstream, sock, () => {});
      sock.resume();
    } catch (err) {
      this.#log.warn({ resourceId, from: sock.remoteAddress, err: (err as Error).message }, 'tcp connection not routed');
      sock.destroy();
    }
  }

  close() {
    for (const { server } of this.#servers.values()) server.close();
    this.#servers.clear();
  }
}
