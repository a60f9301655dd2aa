// Starts this node's WireGuard side (when enabled and some driver can run here) and exposes
// its peers as metrics. Where WireGuard cannot run, the node says why once, loudly, and
// serves every site over websocket: connectors that asked for WireGuard get the coded reason.
import { Gauge, type Registry } from 'prom-client';
import { wireguardEndpoint, type ClusterConfig } from '../cluster.config.ts';
import type { WireGuardSide as Side } from '../protocol/wireguard.ts';
import type { Logger } from '../core/log.ts';
import { unavailable, WireGuardHub } from '../gateways/wireguard/hub.ts';
import { WireGuardUnavailable } from '../gateways/wireguard/open.ts';
import type { DatabasePool } from '../persistence/db.ts';
import type { Sealer } from '../persistence/sealed.ts';

export type WireGuardSide = Side<WireGuardHub>;

export async function startWireGuard(d: { config: ClusterConfig; db: DatabasePool; sealer: Sealer; logger: Logger; onDeviceRestart: () => void; siteHere: (siteId: string) => boolean }): Promise<WireGuardSide> {
  const { config } = d;
  const w = config.wireguard;
  if (!w.enabled) {
    d.logger.info('wireguard: off (wireguard.enabled is false); sites use websocket');
    return { unavailable: unavailable('wireguard.enabled is false on this node') };
  }
  const endpoint = wireguardEndpoint(config);
  if (!endpoint) {
    d.logger.error('wireguard: no endpoint for connectors (set wireguard.endpoint or ingress.publicAddresses); sites use websocket');
    return { unavailable: unavailable('the node has no WireGuard endpoint configured') };
  }
  try {
    return await WireGuardHub.start({ nodeId: config.nodeId, interfaceName: w.interfaceName, driver: w.driver, listenPort: w.listenPort, endpoint, network: w.network, mtu: w.mtu, onDeviceRestart: d.onDeviceRestart, siteHere: d.siteHere }, d.db, d.sealer, d.logger);
  } catch (err) {
    const reason = (err as Error).message;
    if (err instanceof WireGuardUnavailable) d.logger.error({ reason }, `wireguard: unavailable on this node (${reason}); sites use websocket`);
    else d.logger.error({ err: reason }, 'wireguard: the device could not be started; sites use websocket');
    return { unavailable: unavailable(reason) };
  }
}

export function wireguardMetrics(registry: Registry, side: () => WireGuardSide | undefined): void {
  const hub = () => {
    const s = side();
    return s && !('unavailable' in s) ? s : undefined;
  };
  new Gauge({
    name: 'cluster_wireguard_up',
    help: '1 while this node runs a WireGuard device (label: driver)',
    labelNames: ['driver'],
    registers: [registry],
    collect() {
      this.reset();
      const h = hub();
      this.set({ driver: h?.driver ?? 'none' }, h ? 1 : 0);
    },
  });
  // One device read per scrape, shared by the gauges (a scrape collects them concurrently).
  let read: { at: number; peers: Promise<Awaited<ReturnType<WireGuardHub['peers']>>> } | undefined;
  const peers = () => {
    const h = hub();
    if (!h) return Promise.resolve([]);
    if (!read || Date.now() - read.at > 1000) read = { at: Date.now(), peers: h.peers().catch(() => []) };
    return read.peers;
  };
  new Gauge({
    name: 'cluster_wireguard_peers',
    help: 'Peers on this node\'s WireGuard device',
    registers: [registry],
    async collect() {
      this.set((await peers()).length);
    },
  });
  new Gauge({
    name: 'cluster_wireguard_peer_handshake_age_seconds',
    help: 'Seconds since each site peer\'s last WireGuard handshake (-1: none yet)',
    labelNames: ['site'],
    registers: [registry],
    async collect() {
      this.reset();
      const now = Date.now();
      for (const p of await peers()) this.set({ site: p.siteId ?? 'none' }, p.lastHandshakeAt === null ? -1 : (now - p.lastHandshakeAt) / 1000);
    },
  });
  new Gauge({
    name: 'cluster_wireguard_peer_bytes',
    help: 'Bytes through each site peer on this node\'s device, by direction',
    labelNames: ['site', 'direction'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const p of await peers()) {
        this.set({ site: p.siteId ?? 'none', direction: 'received' }, p.rxBytes);
        this.set({ site: p.siteId ?? 'none', direction: 'sent' }, p.txBytes);
      }
    },
  });
}
