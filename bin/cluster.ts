// The `cluster` command line.
//   cluster node --config FILE      run one node (the production entry point)
//   cluster migrate --config FILE   apply schema migrations and exit
//   cluster config --config FILE    validate the config and print it, secrets redacted
//   cluster up [--fresh] [--nodes N] [--valkey-replica] [--netns]  local services, N nodes, haproxy and a demo site (npm start)
//   cluster status [--url URL] [--data-dir DIR]  nodes, sites and resources of a running cluster
//   cluster chaos [--duration S] ...  break nodes of a `cluster up` cluster under traffic and report
import { parseArgs } from 'node:util';
import { isMainThread, workerData } from 'node:worker_threads';
import { loadConfig, redactConfig } from '../cluster.config.ts';
import { isClusterError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { migrate } from '../persistence/migrate.ts';
import { ClusterNode } from '../supervisors/node.ts';
import { runNodeProcess } from '../supervisors/run-node.ts';
import { runEdgeWorker } from '../supervisors/edge-worker.ts';
import type { EdgeWorkerData } from '../protocol/edge-thread.ts';
import { isUsageError, UsageError } from './usage-error.ts';

const USAGE = `usage: cluster <command> [options]
  node --config FILE      run a cluster node
  migrate --config FILE   apply database migrations and exit
  config --config FILE    check a config file and print it with secrets redacted
  up [--fresh] [--nodes N] [--data-dir DIR] [--valkey-replica] [--netns [--netns-subnet 10.X.Y]]
                            start local PostgreSQL, Valkey, Pebble, N nodes (3), haproxy and a demo site (npm start);
                            --netns (root): each node, PostgreSQL and Valkey in a network namespace of its own
                            on a bridge (default 10.231.0.0/24), so \`cluster chaos\` can cut the network
  status [--url URL] [--data-dir DIR]
                            nodes, sites and resources of a running cluster (default http://127.0.0.1:8080;
                            the login comes from CLUSTER_ADMIN_EMAIL/PASSWORD or DIR/secrets.json)
  chaos [--duration S (60)] [--kill-every S (10)] [--modes kill,stop,restart[,valkey-failover]] [--seed N] [--data-dir DIR]
                            against the cluster \`cluster up\` runs: SIGKILL, SIGSTOP or restart a random node
                            every --kill-every seconds under traffic; report outages, lost writes and
                            duplicate actors; exit 1 if a write was lost or an actor ran twice.
                            With \`up --netns\`, network faults too: isolate, cut-valkey, cut-postgres,
                            cut-peers, one-way, lossy-link
Config may also come from CLUSTER_* environment variables (CLUSTER_CONFIG names the file).`;

function fail(err: unknown): never {
  if (isUsageError(err)) {
    process.stderr.write(`error: ${(err as Error).message}\n  (cluster --help lists the commands and options)\n`);
    process.exit(2);
  }
  if (isClusterError(err)) process.stderr.write(`${err.code}: ${err.message}\n`);
  // Our own errors are messages for the operator; a stack only helps on request.
  else if (err instanceof Error && err.constructor === Error && !process.env.CLUSTER_DEBUG) process.stderr.write(`error: ${err.message}\n  (CLUSTER_DEBUG=1 shows where it came from)\n`);
  else process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(isClusterError(err, 'CLUSTER_ERR_CONFIG_INVALID') || isClusterError(err, 'CLUSTER_ERR_CONFIG_FILE_UNREADABLE') ? 2 : 1);
}

async function main(argv: string[]) {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: { config: { type: 'string', short: 'c' }, fresh: { type: 'boolean' }, nodes: { type: 'string' }, url: { type: 'string' }, 'data-dir': { type: 'string' }, 'valkey-replica': { type: 'boolean' }, netns: { type: 'boolean' }, 'netns-subnet': { type: 'string' }, duration: { type: 'string' }, 'kill-every': { type: 'string' }, modes: { type: 'string' }, seed: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: false,
  });
  if (values.help || !command || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  switch (command) {
    case 'node': {
      const config = await loadConfig({ file: values.config });
      const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, base: { node: config.nodeId } });
      await runNodeProcess(new ClusterNode({ config, configFile: values.config, logger }), logger);
      return;
    }
    case 'migrate': {
      const config = await loadConfig({ file: values.config });
      const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, base: { node: config.nodeId } });
      const applied = await migrate({ url: config.postgres.url, connectTimeout: config.postgres.connectTimeout, logger });
      process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')}\n` : 'database is up to date\n');
      return;
    }
    case 'config': {
      const config = await loadConfig({ file: values.config });
      process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
      return;
    }
    case 'up': {
      const { up, DEFAULT_NETNS_SUBNET } = await import('./up.ts');
      const nodes = Number(values.nodes ?? 3);
      if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) throw new UsageError('--nodes must be a whole number from 1 to 9');
      const subnet = values['netns-subnet'];
      if (subnet !== undefined && !/^10\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)$/.test(subnet)) throw new UsageError('--netns-subnet takes the first three octets of a 10.X.Y.0/24 network, e.g. 10.231.0');
      await up({ fresh: values.fresh ?? false, nodes, dataDir: values['data-dir'], valkeyReplica: values['valkey-replica'] ?? false, ...(values.netns || subnet ? { netns: subnet ?? DEFAULT_NETNS_SUBNET } : {}) });
      return;
    }
    case 'status': {
      const { status } = await import('./status.ts');
      await status(values.url, values['data-dir']);
      return;
    }
    case 'chaos': {
      const { chaosCommand } = await import('./chaos.ts');
      process.exitCode = await chaosCommand({ duration: values.duration, killEvery: values['kill-every'], modes: values.modes, seed: values.seed, dataDir: values['data-dir'] });
      return;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

// The node's ingress thread starts from this entry too (supervisors/edge-thread.ts).
if (!isMainThread && (workerData as EdgeWorkerData | undefined)?.edgeWorker) await runEdgeWorker((workerData as EdgeWorkerData).edgeWorker);
else main(process.argv.slice(2)).catch(fail);
