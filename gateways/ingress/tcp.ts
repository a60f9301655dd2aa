// Raw TCP resources: every node listens on each enabled TCP resource's port. A client
// connection goes through a local tunnel when one of the resource's sites is connected here;
// otherwise it is forwarded over the peer link to the node that holds a tunnel, with a PROXY
// protocol v2 header so that node knows the client's address.
import { createServer, type Server, type Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { ClusterError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { TunnelRegistry } from '../connector/tunnels.ts';
import type { RouteTable } from './routes.ts';
import { pathTo, type Placement } from './upstream.ts';

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
      if (!route) throw new ClusterError('CLUSTER_ERR_API_NOT_FOUND', 'the resource is gone', {});
      const upstream = await pathTo(route, this.deps, 'tcp').open({
        source: { address: sock.remoteAddress ?? '0.0.0.0', port: sock.remotePort ?? 0 },
        destination: { address: sock.localAddress ?? '0.0.0.0', port: sock.localPort ?? 0 },
      });
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
