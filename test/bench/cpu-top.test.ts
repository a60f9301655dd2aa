// bench/cpu-top.ts: self time per function from a .cpuprofile, idle excluded, same function
// merged, largest first; and which of our processes a profile came from.
import t from 'tap';
import { busiestWindow, busyMs, inclusiveFrames, profileLabel, topFrames, type CpuProfile } from '../../bench/cpu-top.ts';

const frame = (id: number, functionName: string, url = '', lineNumber = 0) => ({ id, callFrame: { functionName, url, lineNumber } });
// Six samples 1 ms apart: idle twice, writev twice, one each in two copies of the same function.
const profile: CpuProfile = {
  nodes: [frame(1, '(root)'), frame(2, '(idle)'), frame(3, 'writev'), frame(4, 'pick', 'file:///repo/gateways/ingress/upstream.ts', 9), frame(5, 'pick', 'file:///repo/gateways/ingress/upstream.ts', 9), frame(6, 'main', 'file:///repo/supervisors/node.ts', 0)],
  samples: [2, 3, 3, 4, 5, 2],
  timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000],
  startTime: 0,
  endTime: 6000,
};

t.test('self time by function, idle left out, copies of one function merged, shares of the busy time', async (t) => {
  const top = topFrames(profile, 10, '/repo/');
  t.same(top.map((f) => [f.name, f.where, f.selfMs, f.share]), [
    ['writev', '', 2, 50],
    ['pick', 'gateways/ingress/upstream.ts:10', 2, 50],
  ]);
  t.equal(busyMs(profile), 4, 'busy: every sample but the idle ones');
  t.equal(topFrames(profile, 1).length, 1, 'at most N');
});

t.test('a profile is labelled by the script it ran', async (t) => {
  t.equal(profileLabel(profile), 'node');
  t.equal(profileLabel({ ...profile, nodes: [frame(1, 'x', 'file:///repo/connector/connector.ts')] }), 'connector');
  t.equal(profileLabel({ ...profile, nodes: [frame(1, 'x', 'file:///repo/bench/tunnel.ts')] }), 'other');
  t.equal(profileLabel({ ...profile, nodes: [frame(1, 'onData', 'file:///repo/[eval1]')] }), 'floor', "bench:tunnel's floor relay (a script given to node -e)");
});

t.test('the busiest window of a run, and time including what a function called', async (t) => {
  // root -> main -> pick; root -> writev. Ten samples 1 ms apart: idle, then main/pick busy, then idle again.
  const nodes = [
    { ...frame(1, '(root)'), children: [2, 3, 5] },
    frame(2, '(idle)'),
    { ...frame(3, 'main', 'file:///repo/supervisors/node.ts'), children: [4] },
    frame(4, 'pick', 'file:///repo/gateways/ingress/upstream.ts', 9),
    frame(5, 'writev'),
  ];
  const run: CpuProfile = { nodes, samples: [2, 2, 2, 4, 4, 3, 5, 2, 2, 2], timeDeltas: Array(10).fill(1000), startTime: 0, endTime: 10_000 };
  const busiest = busiestWindow(run, 0.003);
  t.equal(busyMs(busiest), 4, 'the window holds the four busy samples');
  t.same(topFrames(busiest, 5, '/repo/').map((f) => [f.name, f.selfMs]), [['pick', 2], ['main', 1], ['writev', 1]]);
  t.same(inclusiveFrames(busiest, 5, '/repo/').map((f) => [f.name, f.selfMs, f.share]), [['main', 3, 75], ['pick', 2, 50], ['writev', 1, 25]], 'main includes pick; shares of the busy time');
  t.equal(busyMs(busiestWindow(run, 60)), 4, 'a window longer than the run is the whole run');
});
