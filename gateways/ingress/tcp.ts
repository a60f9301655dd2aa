// Raw TCP resources: every node listens on each enabled TCP resource's port. A client
// connection goes through a local tunnel when one of the resource's sites is connected here;
// otherwise it is forwarded over the peer link to the node that holds a tunnel, with a PROXY
// protocol v2 header so that node knows the client's address.
import { createServer, type Server, type Socket } from 'node:net';
import type { PortRange } from '../../core/config-fields.ts';
import { ClusterError } from '../../core/errors.ts';
import { relayStreams } from '../../core/splice-relay.ts';
import type { Logger } from '../../core/log.ts';
import type { TunnelRegistry } from '../connector/tunnels.ts';
import type { RouteChange, RouteTable } from './routes.ts';
import { wantedPorts, type ListenReport } from './resource-ports.ts';
import { pathTo, type Placement } from './upstream.ts';

export class TcpIngress {
  readonly #servers = new Map<number, { server: Server; resourceId: string }>();
  readonly #log: Logger;

  constructor(
    private readonly deps: { routes: RouteTable; tunnels: TunnelRegistry; placement: Placement; bindHost: string; ports: PortRange; report: ListenReport; logger: Logger },
  ) {
    this.#log = deps.logger.child({ component: 'ingress-tcp' });
    // Only a change to a TCP route can change the ports wanted.
    deps.routes.on('updated', (changes: RouteChange[]) => changes.some((c) => c.before?.protocol === 'tcp' || c.after?.protocol === 'tcp') && this.sync());
  }

  /** Opens listeners for enabled TCP resources and closes the rest. */
  sync() {
    const want = wantedPorts(this.deps.routes.all(), 'tcp', this.deps.ports, this.deps.report);
    for (const [port, entry] of this.#servers) {
      if (want.get(port) !== entry.resourceId) {
        entry.server.close();
        this.#servers.delete(port);
        this.deps.report(entry.resourceId, null);
      }
    }
    for (const [port, resourceId] of want) {
      if (this.#servers.has(port)) continue;
      const server = createServer((sock) => void this.#serve(sock, resourceId));
      server.on('listening', () => this.deps.report(resourceId, null));
      server.on('error', (err) => {
        // Not bound: forget it (the next route update tries again) and say why in its status.
        if (this.#servers.get(port)?.server === server) this.#servers.delete(port);
        this.#log.error({ port, resourceId, err: err.message }, 'cannot listen for a TCP resource');
        this.deps.report(resourceId, `tcp port ${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      });
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
      const upstream = await pathTo(route, this.deps, 'tcp', true).open({
        source: { address: sock.remoteAddress ?? '0.0.0.0', port: sock.remotePort ?? 0 },
        destination: { address: sock.localAddress ?? '0.0.0.0', port: sock.localPort ?? 0 },
      });
      sock.setNoDelay(true);
      relayStreams(sock, upstream);
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
