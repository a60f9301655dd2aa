// The interface around a WireGuard device: its address, MTU and routes, set with iproute2.
// (The device's keys and peers go over netlink or the UAPI socket; addresses and routes are
// rtnetlink's, changed rarely: once at start, and one /32 route per site that attaches.)
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function ip(...args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 5000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

export const linkExists = (name: string) => existsSync(`/sys/class/net/${name}`);

export async function deleteLink(name: string): Promise<void> {
  if (linkExists(name)) await ip('link', 'del', 'dev', name).catch(() => {});
}

/** The device's own address (a /32: other tunnel addresses are routed one by one), MTU, up. */
export async function bringUp(name: string, address: string, mtu: number): Promise<void> {
  await ip('address', 'replace', `${address}/32`, 'dev', name);
  await ip('link', 'set', 'dev', name, 'mtu', String(mtu), 'up');
}

/**
 * Routes one tunnel address through the device. `advmss` keeps TCP segments inside the
 * tunnel's MTU (40 bytes of IPv4 and TCP headers), so large responses do not stall on a
 * path that drops fragments.
 */
export async function routeTo(name: string, address: string, src: string, mtu: number): Promise<void> {
  await ip('route', 'replace', `${address}/32`, 'dev', name, 'src', src, 'mtu', String(mtu), 'advmss', String(mtu - 40));
}

export async function unroute(name: string, address: string): Promise<void> {
  await ip('route', 'del', `${address}/32`, 'dev', name).catch(() => {}); // already gone
}

/** Addresses routed through the device (the reconcile loop compares them with what it holds). */
export async function routedThrough(name: string): Promise<string[]> {
  const out = await ip('-4', 'route', 'show', 'dev', name);
  return out.split('\n').map((l) => l.split(' ')[0]!).filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a));
}
