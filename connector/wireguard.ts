// The connector's end of the WireGuard transport: its own interface (wireguard-go, or the
// kernel's where it has WireGuard), a fresh key pair per run, one peer per node it is registered
// with (two while a draining node hands it over), and the data-plane listener on its tunnel address. The node's HTTP/2
// streams arrive there exactly as they do over the WebSocket, and meet the same allow-list.
import { randomBytes } from 'node:crypto';
import type { Http2Server } from 'node:http2';
import { createServer, type Server } from 'node:net';
import type { Logger } from '../core/log.ts';
import type { WireGuardDevice } from '../gateways/wireguard/device.ts';
import { generateKeyPair } from '../gateways/wireguard/keys.ts';
import { bringUp, routeTo, unroute } from '../gateways/wireguard/link.ts';
import { resolveKernelWireGuard } from '../gateways/wireguard/netlink-driver.ts';
import { openDevice } from '../gateways/wireguard/open.ts';
import { uapiUnavailable } from '../gateways/wireguard/uapi-driver.ts';
import type { WireGuardOffer } from '../protocol/connector.ts';

/** Seconds between keepalives to the node (holds NAT mappings open). */
const KEEPALIVE_SECONDS = 25;

/** An interface name unique on this machine (wireguard-go's sockets share one directory across namespaces). */
export const defaultInterfaceName = () => `wgc${randomBytes(5).toString('hex')}`.slice(0, 15);

export class ConnectorWireGuard {
  readonly publicKey: string;
  readonly #privateKey: string;
  readonly #name: string;
  readonly #log: Logger;
  readonly #data: Http2Server;
  #device: Promise<WireGuardDevice> | undefined;
  /** Nodes this connector is registered with over WireGuard, by tunnel address. */
  readonly #offers = new Map<string, WireGuardOffer>();
  #listener: { server: Server; address: string; port: number } | undefined;

  private constructor(name: string, data: Http2Server, log: Logger) {
    const keys = generateKeyPair();
    this.#privateKey = keys.privateKey;
    this.publicKey = keys.publicKey;
    this.#name = name;
    this.#data = data;
    this.#log = log;
  }

  /**
   * A key pair, once it is known that an interface can be made here (kernel WireGuard, or
   * wireguard-go with /dev/net/tun and the rights to use it); throws with the reason otherwise.
   * The interface itself is made on the first offer: a site on websocket never gets one.
   */
  static async prepare(o: { name: string; data: Http2Server; logger: Logger }): Promise<ConnectorWireGuard> {
    const kernel = await resolveKernelWireGuard();
    const userspace = 'familyId' in kernel ? undefined : uapiUnavailable();
    if (userspace) throw new Error(`${'unavailable' in kernel ? kernel.unavailable : ''}; and ${userspace}`);
    return new ConnectorWireGuard(o.name, o.data, o.logger.child({ component: 'connector-wireguard', interface: o.name }));
  }

  #open(): Promise<WireGuardDevice> {
    this.#device ??= (async () => {
      const { device, why } = await openDevice({ name: this.#name, driver: 'auto', logger: this.#log, onRestart: async () => {
        for (const offer of this.#offers.values()) await this.#applyLink(offer);
      } });
      await device.configure({ privateKey: this.#privateKey, listenPort: 0, peers: [] });
      this.#log.info({ driver: device.driver, why, publicKey: this.publicKey }, 'WireGuard interface up');
      return device;
    })();
    this.#device.catch(() => (this.#device = undefined)); // tried again on the next offer
    return this.#device;
  }

  async #applyLink(offer: WireGuardOffer): Promise<void> {
    await bringUp(this.#name, offer.siteAddress, offer.mtu);
    await routeTo(this.#name, offer.nodeAddress, offer.siteAddress, offer.mtu);
  }

  /**
   * Adds the node that made the offer as a peer and waits for the first handshake; false when
   * none completes within `timeoutMs` (UDP blocked, say). Peers of other nodes stay: while a
   * draining node hands the site over, its tunnel keeps carrying the streams in flight.
   */
  async connect(offer: WireGuardOffer, timeoutMs: number): Promise<boolean> {
    const device = await this.#open();
    this.#offers.set(offer.nodeAddress, offer);
    await this.#applyLink(offer);
    // Removed and added again: a fresh peer starts a fresh handshake, whose time tells us it worked.
    if ((await device.read()).peers.some((p) => p.publicKey === offer.publicKey)) await device.removePeer(offer.publicKey);
    await device.setPeer({ publicKey: offer.publicKey, endpoint: offer.endpoint, allowedIps: [`${offer.nodeAddress}/32`], keepaliveSeconds: KEEPALIVE_SECONDS });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const peer = (await device.read()).peers.find((p) => p.publicKey === offer.publicKey);
      if (peer?.lastHandshakeAt) {
        await this.#listen(offer);
        return true;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /** The connection to that node ended: its peer and route go (unless a newer offer from it came meanwhile). */
  async release(offer: WireGuardOffer): Promise<void> {
    if (this.#offers.get(offer.nodeAddress) !== offer) return;
    this.#offers.delete(offer.nodeAddress);
    const device = await this.#device?.catch(() => undefined);
    await device?.removePeer(offer.publicKey);
    await unroute(this.#name, offer.nodeAddress);
  }

  /** The data-plane listener on the tunnel address; only nodes the connector registered with may connect. */
  async #listen(offer: WireGuardOffer): Promise<void> {
    const l = this.#listener;
    if (l && l.address === offer.siteAddress && l.port === offer.dataPort) return;
    if (l) await new Promise((r) => l.server.close(r));
    const server = createServer((sock) => {
      if (!this.#offers.has(sock.remoteAddress ?? '')) {
        this.#log.warn({ from: sock.remoteAddress }, 'refused a data-plane connection not from a node this connector registered with');
        return sock.destroy();
      }
      sock.setNoDelay(true);
      this.#data.emit('connection', sock);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(offer.dataPort, offer.siteAddress, () => resolve());
    });
    this.#listener = { server, address: offer.siteAddress, port: offer.dataPort };
  }

  async close(): Promise<void> {
    const l = this.#listener;
    this.#listener = undefined;
    if (l) l.server.close();
    const device = this.#device;
    this.#device = undefined;
    await (await device?.catch(() => undefined))?.close();
  }
}
