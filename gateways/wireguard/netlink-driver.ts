// The kernel driver: WireGuard devices made with `ip link add ... type wireguard` and
// configured over generic netlink (the "wireguard" family), with the `netlink` package's
// socket (a small native binding: Node has no netlink sockets) and our own encoding of the
// family's messages (netlink-codec.ts). Kernel devices live on after the process: a node
// that restarts attaches to its device, and `configure` drops whatever peers it had.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import type { DeviceSettings, DeviceState, PeerConfig, WireGuardDevice } from './device.ts';
import { deleteLink, linkExists } from './link.ts';
import { decodeGet, encodeConfigure, encodeGet, encodeRemovePeer, encodeSetPeer, WG_CMD, WG_GENL_NAME, WG_GENL_VERSION } from './netlink-codec.ts';

type GenlSocket = {
  request(family: number, cmd: number, version: number, data: Uint8Array | Uint8Array[], options?: { flags?: number; timeout?: number }): Promise<[Array<{ data: Buffer }>, unknown]>;
  ctrlRequest(cmd: number, msg: { familyName: string }, options?: { timeout?: number }): Promise<Array<{ familyId?: number }>>;
  socket: { close(): void };
};
type NetlinkModule = { createGenericNetlink(): GenlSocket; genl: { Commands: { GET_FAMILY: number } }; FlagsGet: { DUMP: number } };

const NLM_F_DUMP = 0x300;

function loadNetlink(): NetlinkModule {
  return createRequire(import.meta.url)('netlink') as NetlinkModule;
}

/**
 * The kernel's WireGuard family id, or why it cannot be used: the family is looked up over a
 * real generic-netlink socket, so this says whether the running kernel has WireGuard.
 */
export async function resolveKernelWireGuard(): Promise<{ familyId: number } | { unavailable: string }> {
  if (process.platform !== 'linux') return { unavailable: `netlink exists only on Linux (this is ${process.platform})` };
  let nl: NetlinkModule;
  try {
    nl = loadNetlink();
  } catch (err) {
    return { unavailable: `the netlink binding did not load: ${(err as Error).message}` };
  }
  const sock = nl.createGenericNetlink();
  try {
    const [family] = await sock.ctrlRequest(nl.genl.Commands.GET_FAMILY, { familyName: WG_GENL_NAME }, { timeout: 2000 });
    if (family?.familyId === undefined) return { unavailable: 'the kernel did not name a family id for "wireguard"' };
    return { familyId: family.familyId };
  } catch (err) {
    const msg = (err as Error).message;
    return { unavailable: /ENOENT/.test(msg) ? 'this kernel has no WireGuard (generic netlink family "wireguard" not found; module not loaded or not built)' : `generic netlink lookup failed: ${msg}` };
  } finally {
    sock.socket.close();
  }
}

export class NetlinkDevice implements WireGuardDevice {
  readonly driver = 'netlink' as const;
  readonly name: string;
  readonly #familyId: number;
  readonly #sock: GenlSocket;

  private constructor(name: string, familyId: number) {
    this.name = name;
    this.#familyId = familyId;
    this.#sock = loadNetlink().createGenericNetlink();
  }

  static async open(name: string, familyId: number): Promise<NetlinkDevice> {
    if (!linkExists(name)) await promisify(execFile)('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'], { timeout: 5000 });
    return new NetlinkDevice(name, familyId);
  }

  async #set(payload: Buffer): Promise<void> {
    await this.#sock.request(this.#familyId, WG_CMD.SET_DEVICE, WG_GENL_VERSION, payload, { timeout: 5000 });
  }

  async configure(s: DeviceSettings): Promise<void> {
    for (const payload of encodeConfigure(this.name, s)) await this.#set(payload);
  }

  setPeer(p: PeerConfig): Promise<void> {
    return this.#set(encodeSetPeer(this.name, p));
  }

  removePeer(publicKey: string): Promise<void> {
    return this.#set(encodeRemovePeer(this.name, publicKey));
  }

  async read(): Promise<DeviceState> {
    const [msgs] = await this.#sock.request(this.#familyId, WG_CMD.GET_DEVICE, WG_GENL_VERSION, encodeGet(this.name), { flags: NLM_F_DUMP, timeout: 5000 });
    return decodeGet(msgs.map((m) => m.data));
  }

  async close(): Promise<void> {
    this.#sock.socket.close();
    await deleteLink(this.name);
  }
}
