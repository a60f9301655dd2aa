// What a site actor needs of its node's WireGuard side, as an interface (implemented by
// gateways/wireguard/hub.ts), so actors/ depends on no gateway.
import type { ClusterError } from '../core/errors.ts';
import type { WireGuardOffer } from './connector.ts';

/** A site's peer on the node holding it: addresses, last handshake, bytes. */
export interface SiteTunnelStats {
  siteAddress: string;
  nodeAddress: string;
  /** ISO time; null: no handshake yet. */
  lastHandshakeAt: string | null;
  rxBytes: number;
  txBytes: number;
}

export interface SitePeers {
  /** Adds the site's peer (its connector's key) to this node's device; throws coded refusals. */
  offer(siteId: string, publicKey: string): Promise<WireGuardOffer>;
  /** Removes the site's peer here, if there is one. */
  withdraw(siteId: string): Promise<void>;
  /** Removes the site's peer here after a grace period, unless the site is held here again by then. */
  withdrawLater(siteId: string, graceMs: number): void;
  stats(siteId: string): Promise<SiteTunnelStats | null>;
}

/** The node's WireGuard side, or the coded reason it has none. */
export type WireGuardSide<P extends SitePeers = SitePeers> = P | { unavailable: ClusterError };
