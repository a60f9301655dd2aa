// npm run bench:failover
// Three node processes, 3,000 placed probe actors. Ten rounds: SIGKILL one node, measure
// until the survivors declare it dead and until every orphaned actor runs again, count
// duplicates (an actor seen on two survivors at once), then restart the node and let
// placement settle. One more round with SIGSTOP (the lease path). Last line: one JSON object.
import { join } from 'node:path';
import pg from 'pg';
import { createLogger } from '../core/log.ts';
import { Secret } from '../core/secret.ts';
import { NodeProcess } from '../devenv/node-process.ts';
import { inspectNode, type NodeView } from '../devenv/peer-client.ts';
import { migrate } from '../persistence/migrate.ts';
import { testNodeConfig } from '../test/harness/nodes.ts';
import { log, runBench, withBenchServices } from './lib.ts';
import { size } from './sizes.ts';

const ACTORS = size('ACTORS', 3000, 20);
const ROUNDS = size('ROUNDS', 10, 1);

const probes = (v: NodeView) => v.actors.filter((a) => a.kind === 'probe');

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};

async function main() {
  return withBenchServices('failover', async ({ dir, services }) => {
    const nodes = new Map<string, NodeProcess>();
    try {
      const url = await services.postgres!.createDatabase('bench');
      await migrate({ url: new Secret(url), connectTimeout: 5000, logger: createLogger({ level: 'warn' }) });
      const ids = Array.from({ length: ACTORS }, (_, i) => `a${i}`);
      const db = new pg.Client({ connectionString: url });
      await db.connect();
      await db.query('INSERT INTO probe_actors (id) SELECT unnest($1::text[])', [ids]);
      await db.end();

      const configs = new Map<string, Record<string, any>>();
      for (const id of ['node-1', 'node-2', 'node-3']) {
        configs.set(id, await testNodeConfig({
          postgresUrl: url,
          valkeyUrl: services.valkey!.url,
          clusterName: 'bench',
          nodeId: id,
          config: { log: { level: 'warn' }, failover: { reconcileEvery: '2s' }, shutdown: { drainDelay: '0ms' } },
        }));
      }
      const start = (id: string) => {
        const n = new NodeProcess({ name: id, config: configs.get(id)!, configFile: join(dir, `${id}.yaml`), logFile: join(dir, `${id}.log`) });
        nodes.set(id, n);
        return n;
      };
      const target = (id: string) => ({ peer: String(configs.get(id)!.peer.bind), nodeId: id, clusterSecret: String(configs.get(id)!.clusterSecret) });
      const snapshot = async (ids: string[]): Promise<NodeView[]> => Promise.all(ids.map((id) => inspectNode(target(id), 5000)));
      const starts = async () => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          return Number((await c.query('SELECT sum(starts) AS n FROM probe_actors')).rows[0].n);
        } finally {
          await c.end();
        }
      };
      /** Waits until all actors run exactly once across `on` and their start-up writes are done. */
      const settle = async (on: string[], ms = 60_000) => {
        const deadline = Date.now() + ms;
        let quiet = -1;
        while (Date.now() < deadline) {
          const views = await snapshot(on).catch(() => []);
          const owner = new Map<string, string>();
          // Probes only: other kinds (the cert-issuer singleton) also run on these nodes.
          for (const v of views) for (const a of probes(v)) owner.set(a.id, v.node);
          const total = views.reduce((s, v) => s + probes(v).length, 0);
          if (owner.size === ACTORS && total === ACTORS) {
            const n = await starts();
            if (n === quiet) return owner;
            quiet = n;
            await new Promise((r) => setTimeout(r, 500));
            continue;
          }
          quiet = -1;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error('placement did not settle');
      };

      for (const id of configs.keys()) start(id);
      await Promise.all([...nodes.values()].map((n) => n.waitReady(60_000)));
      await settle([...configs.keys()]);
      log(`cluster ready: 3 nodes, ${ACTORS} actors`);

      const detect: number[] = [];
      const respawn: number[] = [];
      let duplicates = 0;

      /** Kills (or freezes) `victim` and measures until the survivors run all its actors. */
      const round = async (victim: string, signal: 'SIGKILL' | 'SIGSTOP') => {
        const owners = await settle([...configs.keys()]);
        const orphans = [...owners].filter(([, n]) => n === victim).map(([a]) => a);
        const survivors = [...configs.keys()].filter((n) => n !== victim);
        const t0 = Date.now();
        nodes.get(victim)!.proc.signal(signal);
        let detected: number | undefined;
        for (;;) {
          const views = await snapshot(survivors);
          const now = Date.now() - t0;
          if (detected === undefined && views.every((v) => !v.live.includes(victim))) detected = now;
          const seen = new Map<string, number>();
          for (const v of views) for (const a of probes(v)) seen.set(a.id, (seen.get(a.id) ?? 0) + 1);
          duplicates += [...seen.values()].filter((c) => c > 1).length;
          if (orphans.every((a) => seen.has(a))) return { detected: detected ?? now, respawned: now, orphans: orphans.length };
          if (now > 30_000) throw new Error(`round did not finish: ${orphans.filter((a) => !seen.has(a)).length} orphans missing`);
          await new Promise((r) => setTimeout(r, 25));
        }
      };

      for (let r = 0; r < ROUNDS; r++) {
        const victim = `node-${(r % 3) + 1}`;
        const res = await round(victim, 'SIGKILL');
        await nodes.get(victim)!.proc.exited;
        detect.push(res.detected);
        respawn.push(res.respawned);
        log(`round ${r + 1}: killed ${victim}; detected ${res.detected}ms, ${res.orphans} orphans running again after ${res.respawned}ms`);
        await start(victim).waitReady(60_000);
        await settle([...configs.keys()]);
      }
      const stop = await round('node-2', 'SIGSTOP');
      log(`sigstop round: ${stop.orphans} orphans running again after ${stop.respawned}ms (lease ttl 3000ms)`);
      nodes.get('node-2')!.proc.signal('SIGCONT');
      await settle([...configs.keys()]);

      return {
        bench: 'failover',
        actors: ACTORS,
        rounds: ROUNDS,
        detect_ms_p50: pct(detect, 50),
        respawn_all_ms_p50: pct(respawn, 50),
        respawn_all_ms_p99: pct(respawn, 99),
        respawn_all_ms_max: Math.max(...respawn),
        sigstop_respawn_ms: stop.respawned,
        duplicates,
      };
    } finally {
      await Promise.all([...nodes.values()].map((n) => n.proc.stop('SIGKILL', 1000)));
    }
  });
}

runBench(main);
