// The "machines" of `cluster up --netns` and the faults `cluster chaos` puts between them
// (devenv/netns.ts): real namespaces on a bridge, real nftables rules, real TCP connections.
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import t from 'tap';
import { NetnsLab } from '../../devenv/netns.ts';
import { ServiceProcess } from '../../devenv/process.ts';

const PORT = 7000;

/** Whether a TCP connection from our namespace (bound to `from`) to ip:PORT gets an answer within 700 ms. */
function reachFrom(from: string, ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: ip, port: PORT, localAddress: from });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(700, () => done(false));
    sock.once('data', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** The same from inside another host's namespace. */
function reachFromHost(ns: string, ip: string): boolean {
  const probe = `const s=require('net').connect(${PORT},'${ip}');s.setTimeout(700,()=>process.exit(1));s.on('data',()=>process.exit(0));s.on('error',()=>process.exit(1));`;
  return spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', probe], { timeout: 5000 }).status === 0;
}

t.test('hosts on the bridge reach each other; each fault drops what it says and nothing else; healing restores all', async (t) => {
  const lab = new NetnsLab(`10.250.${Math.floor(Math.random() * 255)}`);
  NetnsLab.clean(lab.prefix);
  lab.create();
  t.teardown(() => lab.destroy());
  const a = lab.addHost('a', 11);
  const b = lab.addHost('b', 12);
  const server = new ServiceProcess({ name: 'listener', command: process.execPath, args: ['-e', `require('net').createServer((s) => s.end('hi')).listen(${PORT}, '${b.ip}')`], netns: b.ns });
  t.teardown(() => server.stop('SIGKILL', 1000));
  for (let i = 0; i < 50 && !(await reachFrom(lab.gateway, b.ip)); i++) await new Promise((r) => setTimeout(r, 100));

  const state = async () => ({ client: await reachFrom(lab.gateway, b.ip), observer: await reachFrom(lab.observer, b.ip), peer: reachFromHost(a.ns, b.ip) });
  t.same(await state(), { client: true, observer: true, peer: true }, 'no fault: everyone reaches b');
  lab.apply('b', { kind: 'isolate' });
  t.same(await state(), { client: false, observer: true, peer: false }, 'isolate: only the observer still reaches b');
  lab.apply('b', { kind: 'cut', from: [a.ip] });
  t.same(await state(), { client: true, observer: true, peer: false }, 'cut from a: a cannot reach b, clients can');
  lab.apply('b', { kind: 'one-way' });
  t.same(await state(), { client: false, observer: true, peer: false }, 'one-way: b hears connections but its answers never leave');
  lab.apply('b', { kind: 'loss', from: [a.ip], share: 100 });
  t.same(await state(), { client: true, observer: true, peer: false }, 'loss of 100% between a and b: a cannot reach b');
  lab.apply('b', { kind: 'loss', from: [a.ip], share: 0 });
  t.same(await state(), { client: true, observer: true, peer: true }, 'loss of 0%: everything passes');
  lab.heal('b');
  t.same(await state(), { client: true, observer: true, peer: true }, 'healed: everyone reaches b again');
});
