// bench/heap-top.ts: live bytes by the function that allocated them (self) and by every
// function on the allocating stack (inclusive, a recursive one counted once per sample).
import t from 'tap';
import { topAllocators, type HeapNode } from '../../bench/heap-top.ts';

const node = (functionName: string, selfSize: number, children: HeapNode[] = [], url = 'file:///repo/actors/site.ts', lineNumber = 0): HeapNode => ({ callFrame: { functionName, url, lineNumber }, selfSize, children });
const MB = 1024 * 1024;
// root -> main -> walk -> walk (recursion) -> Buffer (3 MB); main -> parse (1 MB, own)
const head = node('(root)', 0, [node('main', 0, [node('walk', 0, [node('walk', 0, [node('alloc', 3 * MB, [], '', 0)], 'file:///repo/x.ts', 4)], 'file:///repo/x.ts', 4), node('parse', 1 * MB, [], 'file:///repo/y.ts', 9)], 'file:///repo/main.ts')], '');

t.test('live bytes by allocating function, self and inclusive, a recursive frame counted once', async (t) => {
  const top = topAllocators({ head }, 10, '/repo/');
  t.equal(top.totalMb, 4);
  t.same(top.self.map((f) => [f.name, f.where, f.mb, f.share]), [
    ['alloc', '', 3, 75],
    ['parse', 'y.ts:10', 1, 25],
  ]);
  t.same(top.inclusive.map((f) => [f.name, f.mb]), [['main', 4], ['walk', 3], ['alloc', 3], ['parse', 1]], 'walk recurses but holds 3 MB, not 6; the root is left out');
  t.equal(topAllocators({ head }, 1).self.length, 1, 'at most N');
});
