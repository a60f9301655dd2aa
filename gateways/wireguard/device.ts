// One interface for a WireGuard device, whichever driver runs it: the kernel's, over generic
// netlink, or wireguard-go's, over its UAPI socket. Keys are base64 as WireGuard writes them.
export type DriverName = 'netlink' | 'uapi';

export interface PeerConfig {
  publicKey: string;
  /** CIDRs, e.g. "100.89.0.7/32"; replace the peer's previous list. */
  allowedIps: string[];
  /** host:port; unset: learnt from the peer's handshake. */
  endpoint?: string;
  /** Seconds; 0 or unset: off. */
  keepaliveSeconds?: number;
}

export interface PeerStats {
  publicKey: string;
  endpoint: string | null;
  /** Epoch milliseconds of the last completed handshake; null: never. */
  lastHandshakeAt: number | null;
  rxBytes: number;
  txBytes: number;
  allowedIps: string[];
}

export interface DeviceState {
  listenPort: number;
  peers: PeerStats[];
}

export interface DeviceSettings {
  privateKey: string;
  /** 0: the driver picks (a connector's device). */
  listenPort: number;
  /** Every peer the device should have; others are removed in the same step. */
  peers: PeerConfig[];
}

export interface WireGuardDevice {
  readonly driver: DriverName;
  readonly name: string;
  /** Sets key and port and replaces every peer at once. */
  configure(s: DeviceSettings): Promise<void>;
  /** Adds or updates one peer. */
  setPeer(p: PeerConfig): Promise<void>;
  removePeer(publicKey: string): Promise<void>;
  read(): Promise<DeviceState>;
  /** Removes the interface (and stops its process, for wireguard-go). */
  close(): Promise<void>;
}
