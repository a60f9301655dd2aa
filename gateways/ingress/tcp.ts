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
  /** False for a target its connector reported unhealthy. */
  healthy(targetId: string): boolean;
  /** Node holding each site's tunnel (live owners only). */
  siteNodes(siteIds: string[]): Promise<Map<string, string>>;
  /** Opens a forwarded stream to `node` for a target; the header goes first. */
  forward(node: string, resourceId: string, targetId: string, header: Buffer): Promise<Duplex>;
}

export type Choice = { target: RouteTarget; node: 'local' } | { target: RouteTarget; node: string };

/** Local tunnels first (no extra hop), else any node holding a tunnel of an enabled target. */
export async function chooseTarget(route: Route, tunnels: TunnelRegistry, placement: Placement, protocol: 'tcp' | 'udp'): Promise<Choice | undefined> {
  const usable = route.targets.filter((t) => t.enabled && placement.healthy(t.id) && (protocol === 'udp' ? t.scheme === 'udp' : t.scheme !== 'udp'));
  const local = usable.filter((t) => tunnels.has(t.siteId));
  const here = pickWeighted(local);
  if (here) return { target: here, node: 'local' };
  const nodes = await placement.siteNodes([...new Set(usable.map((t) => t.siteId))]);
  const remote = pickWeighted(usable.filter((t) => nodes.has(t.siteId)));
  return remote ? { target: remote, node: nodes.get(remote.siteId)! } : undefined;
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
      const choice = await chooseTarget(route, this.deps.tunnels, this.deps.placement, 'tcp');
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
