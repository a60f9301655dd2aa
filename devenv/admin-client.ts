// A minimal admin API client for the launcher and the benchmarks (tests have their own
// richer one in test/harness/api.ts), and the first-start setup token a node prints.
import { readFileSync } from 'node:fs';

export interface AdminReply {
  status: number;
  body: any;
  cookie: string | undefined;
}

/** One JSON request; the session cookie the answer sets, if any, is returned. */
export async function adminCall(base: string, method: string, path: string, body?: unknown, cookie?: string): Promise<AdminReply> {
  const res = await fetch(`${base}${path}`, { method, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(cookie ? { cookie } : {}) }, body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as any, cookie: res.headers.get('set-cookie')?.split(';')[0] };
}

/** The one-time setup token a node printed on its console (its log file here). */
export async function setupToken(nodes: Iterable<{ logFile: string }>, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    for (const n of nodes) {
      const m = /one-time setup token:\s+(\S+)/.exec(readFileSync(n.logFile, 'utf8'));
      if (m) return m[1]!;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no setup token printed');
}
