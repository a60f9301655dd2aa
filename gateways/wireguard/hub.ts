// This node's WireGuard side of the site tunnels: one device (kernel or wireguard-go), the
// node's key pair and tunnel address, and one peer per site whose connector registered here
// over WireGuard, each with a /32 route. The site actor offers and withdraws peers; nothing
// else adds them. Start-up drops every peer the device had, and a reconcile loop removes any
// peer or route no local site holds (a crash between two steps leaves nothing stale).
import type { Logger } from '../../core/log.ts';
import { ClusterError } from '../../core/errors.ts';
import type { DatabasePool } from '../../persistence/db.ts';
import type { Sealer } from '../../persistence/sealed.ts';
import { claimConnectorKey, nodeKeyPair, tunnelAddress } from '../../persistence/wireguard.ts';
import { WIREGUARD_DATA_PORT, type WireGuardOffer } from '../../protocol/connector.ts';
import type { SitePeers, SiteTunnelStats } from '../../protocol/wireguard.ts';
import type { PeerStats, WireGuardDevice } from './device.ts';
import { bringUp, routedThrough, routeTo, unroute } from './link.ts';
import { guardInterface, unguardInterface } from './firewall.ts';
import { openDevice, WireGuardUnavailable, type DriverChoice } from './open.ts';

export interface HubConfig {
  nodeId: string;
  interfaceName: string;
  driver: DriverChoice;
  listenPort: number;
  /** host:port connectors send WireGuard to. */
  endpoint: string;
  network: string;
  mtu: number;
  /** After wireguard-go was started again: the connectors on it must handshake afresh. */
  onDeviceRestart?: () => void;
  /** Whether a site actor runs here (the reconcile loop drops the peers of sites that do not). */
  siteHere?: (siteId: string) => boolean;
}

/** A site's peer on this node. */
interface SitePeer {
  publicKey: string;
  address: string;
}

export class WireGuardHub implements SitePeers {
  readonly #c: HubConfig;
  readonly #db: DatabasePool;
  readonly #log: Logger;
  readonly #device: WireGuardDevice;
  readonly #publicKey: string;
  readonly address: string;
  readonly #peers = new Map<string, SitePeer>();
  #reconciling: NodeJS.Timeout | undefined;

  private constructor(c: HubConfig, db: DatabasePool, log: Logger, device: WireGuardDevice, publicKey: string, address: string) {
    this.#c = c;
    this.#db = db;
    this.#log = log;
    this.#device = device;
    this.#publicKey = publicKey;
    this.address = address;
  }

  get driver() {
    return this.#device.driver;
  }

  /**
   * Opens the device with this node's sealed key; every peer it had is dropped. Throws
   * WireGuardUnavailable (with the reason) where no driver can run.
   */
  static async start(c: HubConfig, db: DatabasePool, sealer: Sealer, logger: Logger): Promise<WireGuardHub> {
    const log = logger.child({ component: 'wireguard' });
    const keys = await nodeKeyPair(db, sealer, c.nodeId);
    const address = await tunnelAddress(db, { nodeId: c.nodeId }, c.network);
    let hub: WireGuardHub | undefined;
    const { device, why } = await openDevice({ name: c.interfaceName, driver: c.driver, logger, onRestart: () => (hub ? hub.#restoreLink() : Promise.resolve()) });
    hub = new WireGuardHub(c, db, log, device, keys.publicKey, address);
    await device.configure({ privateKey: keys.privateKey, listenPort: c.listenPort, peers: [] });
    await bringUp(c.interfaceName, address, c.mtu);
    try {
      await guardInterface(c.interfaceName);
    } catch (err) {
      await device.close();
      throw new WireGuardUnavailable(`the interface could not be firewalled, and without it every site could reach this node's ports (${(err as Error).message}; install nftables)`);
    }
    for (const stale of await routedThrough(c.interfaceName)) if (stale !== address) await unroute(c.interfaceName, stale);
    hub.#reconciling = setInterval(() => void hub!.reconcile().catch((err) => log.warn({ err: (err as Error).message }, 'wireguard reconcile failed')), 30_000).unref();
    log.info({ driver: device.driver, why, interface: c.interfaceName, listenPort: c.listenPort, endpoint: c.endpoint, address, publicKey: keys.publicKey }, `wireguard: ${device.driver} driver (${why})`);
    return hub;
  }

  /** wireguard-go came back: its interface is new, so address and routes go on again. */
  async #restoreLink(): Promise<void> {
    await bringUp(this.#c.interfaceName, this.address, this.#c.mtu);
    for (const p of this.#peers.values()) await routeTo(this.#c.interfaceName, p.address, this.address, this.#c.mtu);
    this.#c.onDeviceRestart?.();
  }

  /**
   * Makes the site reachable over this node's device: records its connector's key (refused if
   * malformed or another site's), gives it its address, adds the peer and the route. Returns
   * what the connector needs to bring up its end.
   */
  async offer(siteId: string, publicKey: string): Promise<WireGuardOffer> {
    await claimConnectorKey(this.#db, siteId, publicKey);
    const address = await tunnelAddress(this.#db, { siteId }, this.#c.network);
    // The site's previous peer goes, even under the same key: a fresh peer starts a fresh
    // handshake, which the connector waits for.
    const old = this.#peers.get(siteId);
    if (old) await this.#device.removePeer(old.publicKey);
    // Any other local site still holding this address (deleted, its address reused) loses it.
    for (const [other, p] of this.#peers) if (other !== siteId && p.address === address) await this.withdraw(other);
    this.#peers.set(siteId, { publicKey, address });
    await this.#device.setPeer({ publicKey, allowedIps: [`${address}/32`] });
    await routeTo(this.#c.interfaceName, address, this.address, this.#c.mtu);
    return { publicKey: this.#publicKey, endpoint: this.#c.endpoint, nodeAddress: this.address, siteAddress: address, dataPort: WIREGUARD_DATA_PORT, mtu: this.#c.mtu };
  }

  /** Removes the site's peer and route (it moved, went offline, or its actor stopped here). */
  async withdraw(siteId: string): Promise<void> {
    const p = this.#peers.get(siteId);
    if (!p) return;
    this.#peers.delete(siteId);
    await this.#device.removePeer(p.publicKey);
    if (![...this.#peers.values()].some((o) => o.address === p.address)) await unroute(this.#c.interfaceName, p.address);
  }

  /**
   * The site's actor stopped here (it moved, or the node is leaving): the peer goes after
   * `graceMs`, so streams in flight on a tunnel being handed over can finish, unless a site
   * actor here took it up again meanwhile.
   */
  withdrawLater(siteId: string, graceMs: number): void {
    const p = this.#peers.get(siteId);
    if (!p) return;
    setTimeout(() => {
      if (this.#peers.get(siteId) !== p || this.#c.siteHere?.(siteId)) return;
      void this.withdraw(siteId).catch((err) => this.#log.warn({ siteId, err: (err as Error).message }, 'could not remove a WireGuard peer'));
    }, graceMs).unref();
  }

  /** Handshake age and bytes of the site's peer here, or null when it has none here. */
  async stats(siteId: string): Promise<SiteTunnelStats | null> {
    const p = this.#peers.get(siteId);
    if (!p) return null;
    const s = (await this.#device.read()).peers.find((x) => x.publicKey === p.publicKey);
    return { siteAddress: p.address, nodeAddress: this.address, lastHandshakeAt: s?.lastHandshakeAt ? new Date(s.lastHandshakeAt).toISOString() : null, rxBytes: s?.rxBytes ?? 0, txBytes: s?.txBytes ?? 0 };
  }

  /** Every peer on the device with the site it belongs to (metrics). */
  async peers(): Promise<Array<PeerStats & { siteId: string | null }>> {
    const byKey = new Map([...this.#peers].map(([siteId, p]) => [p.publicKey, siteId]));
    return (await this.#device.read()).peers.map((p) => ({ ...p, siteId: byKey.get(p.publicKey) ?? null }));
  }

  /** Removes peers and routes that no site here holds. */
  async reconcile(): Promise<{ peers: number; routes: number }> {
    let gone = 0;
    for (const siteId of [...this.#peers.keys()]) {
      if (this.#c.siteHere && !this.#c.siteHere(siteId)) {
        await this.withdraw(siteId);
        gone++;
      }
    }
    const keys = new Set([...this.#peers.values()].map((p) => p.publicKey));
    const addresses = new Set([this.address, ...[...this.#peers.values()].map((p) => p.address)]);
    let peers = 0;
    let routes = 0;
    for (const p of (await this.#device.read()).peers) {
      if (keys.has(p.publicKey)) continue;
      await this.#device.removePeer(p.publicKey);
      peers++;
    }
    for (const a of await routedThrough(this.#c.interfaceName)) {
      if (addresses.has(a)) continue;
      await unroute(this.#c.interfaceName, a);
      routes++;
    }
    if (peers || routes || gone) this.#log.warn({ peers: peers + gone, routes }, 'removed WireGuard peers and routes no site here holds');
    return { peers: peers + gone, routes };
  }

  async close(): Promise<void> {
    clearInterval(this.#reconciling);
    this.#peers.clear();
    await this.#device.close();
    await unguardInterface(this.#c.interfaceName);
  }
}

/** The refusal a connector gets when this node cannot offer WireGuard. */
export function unavailable(reason: string): ClusterError<'CLUSTER_ERR_WIREGUARD_UNAVAILABLE'> {
  return new ClusterError('CLUSTER_ERR_WIREGUARD_UNAVAILABLE', `this node runs no WireGuard device: ${reason}`, { reason });
}
