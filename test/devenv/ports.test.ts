// Picking ports for local services: outside the ephemeral range, and a second pick when the
// first was taken before the server could bind it.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { freePort, onFreePorts } from '../../devenv/ports.ts';

const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

t.test('free ports are picked below the ephemeral range that outgoing connections use', async (t) => {
  const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
  t.ok(ports.every((p) => p >= 10_000 && p < ephemeralLow), `all in [10000, ${ephemeralLow}): ${ports.join(', ')}`);
});

t.test('a server whose port was taken meanwhile is started again on new ports; other failures are not retried', async (t) => {
  const log = join(t.testdir(), 'server.log');
  const tried: number[][] = [];
  const started = await onFreePorts(2, [log], async (ports) => {
    tried.push(ports);
    if (tried.length === 1) {
      appendFileSync(log, 'bind: address already in use\n');
      throw new Error('exited during start-up');
    }
    return ports;
  });
  t.equal(tried.length, 2, 'tried twice');
  t.same(started, tried[1], 'the second pick is what runs');
  t.equal(new Set(tried[0]).size, 2, 'two distinct ports per pick');

  let calls = 0;
  await t.rejects(onFreePorts(1, [log], async () => {
    calls++;
    throw new Error('bad config');
  }), { message: 'bad config' });
  t.equal(calls, 1, 'an old "address already in use" line in the log does not count: no retry');

  calls = 0;
  await t.rejects(onFreePorts(1, [log], async () => {
    calls++;
    appendFileSync(log, 'Address already in use\n');
    throw new Error('taken');
  }), { message: 'taken' });
  t.equal(calls, 3, 'three attempts at most');
});
