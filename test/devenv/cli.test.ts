// The `cluster` command line as an operator meets it when they type something wrong.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { CLUSTER_CLI } from '../../devenv/local-cluster.ts';
import { freePort } from '../../devenv/ports.ts';

const run = (...args: string[]) => spawnSync(process.execPath, [CLUSTER_CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH }, timeout: 30_000 });

t.test('a command line the CLI cannot act on exits 2 with one line naming the problem, never a stack', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['bogus'], /^error: unknown command "bogus"$/m],
    [['up', '--nodez', '3'], /^error: Unknown option '--nodez'$/m],
    [['up', '--nodes', '12'], /^error: --nodes must be a whole number from 1 to 9$/m],
    [['chaos', '--modes', 'kill,explode'], /^error: --modes takes a list of kill, stop, restart, valkey-failover, isolate, cut-valkey, cut-postgres, cut-peers, one-way, lossy-link \(got explode\)$/m],
    [['up', '--netns-subnet', '192.168.1'], /^error: --netns-subnet takes the first three octets of a 10\.X\.Y\.0\/24 network, e\.g\. 10\.231\.0$/m],
    [['chaos', '--duration', '2'], /^error: --duration must be a number of seconds, at least 5$/m],
  ];
  for (const [args, message] of cases) {
    const res = run(...args);
    t.equal(res.status, 2, `cluster ${args.join(' ')} exits 2`);
    t.match(res.stderr, message, 'and says why');
    t.notMatch(res.stderr, /^\s+at /m, 'without a stack trace');
  }
  const help = run('--help');
  t.equal(help.status, 0, '--help exits 0');
  t.match(help.stdout, /^usage: cluster <command>/, 'and prints the usage');
});

t.test('`cluster status` against an address where nothing answers says so and exits 1', async (t) => {
  const port = await freePort();
  const res = run('status', '--url', `http://127.0.0.1:${port}`, '--data-dir', t.testdir({ 'secrets.json': JSON.stringify({ adminEmail: 'a@b.test', adminPassword: 'x' }) }));
  t.equal(res.status, 1);
  t.match(res.stderr, new RegExp(`^error: cannot reach the admin API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`, 'm'));
  t.notMatch(res.stderr, /^\s+at /m, 'without a stack trace');
});
