// Keeps each node's WireGuard interface one-way: the node opens connections to sites through
// it, and nothing else passes. Without this, a connector (any tenant's) could open connections
// to whatever the node listens on at 0.0.0.0, and, on a machine that forwards IP, reach other
// sites' tunnel addresses through the node. One nftables table per interface, replaced
// atomically, removed with the device.
import { execFile } from 'node:child_process';

const tableName = (iface: string) => `cluster_wg_${iface.replace(/[^a-zA-Z0-9_]/g, '_')}`;

function nft(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], { timeout: 5000 }, (err, _out, stderr) => (err ? reject(new Error(`nft: ${(stderr || err.message).trim()}`)) : resolve()));
    child.stdin!.end(script);
  });
}

/** The rules, as one nft script (add-then-delete makes the replace work whether or not the table exists). */
export function firewallScript(iface: string): string {
  const t = tableName(iface);
  return `table inet ${t}
delete table inet ${t}
table inet ${t} {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "${iface}" ct state established,related accept
    iifname "${iface}" drop
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "${iface}" drop
    oifname "${iface}" drop
  }
}
`;
}

/** Lets only replies to the node's own connections in through the interface, and nothing through the node. */
export const guardInterface = (iface: string) => nft(firewallScript(iface));

/** Removes the interface's table (the device is going). */
export async function unguardInterface(iface: string): Promise<void> {
  const t = tableName(iface);
  await nft(`table inet ${t}\ndelete table inet ${t}\n`).catch(() => {});
}
