// Target health checks, run by the connector (it is the one that can reach the targets).
// Each configured check runs on its interval; a target turns unhealthy after
// `unhealthyThreshold` failures in a row and healthy again after `healthyThreshold`
// successes. Status changes are reported to the cluster.
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { ConnectorTarget } from '../protocol/connector.ts';

interface Check {
  type: 'http' | 'tcp' | 'none';
  path: string;
  intervalMs: number;
  timeoutMs: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
}

function checkOf(t: ConnectorTarget): Check {
  const h = t.healthCheck as Partial<Check>;
  return {
    type: h.type ?? 'none',
    path: h.path ?? '/',
    intervalMs: h.intervalMs ?? 5000,
    timeoutMs: h.timeoutMs ?? 2000,
    healthyThreshold: h.healthyThreshold ?? 1,
    unhealthyThreshold: h.unhealthyThreshold ?? 2,
  };
}

function probe(t: ConnectorTarget, c: Check): Promise<boolean> {
  return new Promise((resolve) => {
    if (c.type === 'tcp') {
      const s = connect({ host: t.host, port: t.port });
      s.setTimeout(c.timeoutMs, () => (s.destroy(), resolve(false)));
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
      return;
    }
    const send = t.scheme === 'https' ? httpsRequest : request;
    const req = send({ host: t.host, port: t.port, path: c.path, method: 'GET', timeout: c.timeoutMs, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 500) < 400);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

export class HealthChecker {
  readonly #report: (changes: Array<{ id: string; healthy: boolean }>) => void;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #status = new Map<string, { healthy: boolean; streak: number }>();

  constructor(report: (changes: Array<{ id: string; healthy: boolean }>) => void) {
    this.#report = report;
  }

  /** Replaces the checks with those of `targets` (a new config from the cluster). */
  configure(targets: ConnectorTarget[]) {
    this.stop();
    for (const t of targets) {
      const c = checkOf(t);
      if (c.type === 'none' || !t.enabled || t.scheme === 'udp') continue;
      const run = async () => {
        const ok = await probe(t, c);
        const s = this.#status.get(t.id);
        if (!s) {
          // First observation: report it, so the cluster knows this target is checked.
          this.#status.set(t.id, { healthy: ok, streak: 0 });
          this.#report([{ id: t.id, healthy: ok }]);
          return;
        }
        const streak = ok === s.healthy ? 0 : s.streak + 1;
        const flip = streak >= (ok ? c.healthyThreshold : c.unhealthyThreshold);
        this.#status.set(t.id, { healthy: flip ? ok : s.healthy, streak: flip ? 0 : streak });
        if (flip) this.#report([{ id: t.id, healthy: ok }]);
      };
      this.#timers.set(t.id, setInterval(() => void run(), c.intervalMs));
      void run();
    }
  }

  /** Current known statuses (sent again after a reconnect). */
  snapshot(): Array<{ id: string; healthy: boolean }> {
    return [...this.#status].filter(([id]) => this.#timers.has(id)).map(([id, s]) => ({ id, healthy: s.healthy }));
  }

  stop() {
    for (const t of this.#timers.values()) clearInterval(t);
    this.#timers.clear();
  }
}
