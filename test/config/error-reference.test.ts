// The operators' error-code reference (docs/errors.md) against the one registry in
// core/errors.ts: an operator looking up a code they were shown must find it, with the
// HTTP status the API really answers with.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { ERROR_CODES, type ErrorCode } from '../../core/errors.ts';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
/** code -> the HTTP cell of its row, for every table row naming a code. */
const rows = new Map<string, string>();
for (const line of doc.split('\n')) {
  const m = /^\| `(CLUSTER_ERR_[A-Z_]+)` \|([^|]*)\|/.exec(line);
  if (!m) continue;
  if (rows.has(m[1]!)) t.fail(`${m[1]} is listed twice`);
  rows.set(m[1]!, m[2]!.trim());
}

t.test('every registered error code is documented with the status the API answers with', async (t) => {
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];
  t.same(codes.filter((c) => !rows.has(c)), [], 'no code is missing from docs/errors.md');
  for (const code of codes) {
    if (!rows.has(code)) continue;
    const status = ERROR_CODES[code].status;
    const cell = rows.get(code)!;
    // The first number in the cell is the status; others may follow in words ("400 (or 413, 415)").
    t.equal(cell === '' ? undefined : Number(/^\d{3}/.exec(cell)?.[0]), status, `${code}: HTTP ${status ?? 'none'}`);
  }
});

t.test('the reference lists no code the registry does not have', async (t) => {
  t.same([...rows.keys()].filter((c) => !(c in ERROR_CODES)), [], 'every documented code exists');
});

t.test('every code the source names is registered, and none is thrown as a bare Error', async (t) => {
  const root = new URL('../../', import.meta.url);
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '*.ts'], { cwd: root, encoding: 'utf8' }).split('\n').filter((f) => f && !f.startsWith('test/'));
  const unknown = new Set<string>();
  const bare: string[] = [];
  for (const f of files) {
    const text = readFileSync(new URL(f, root), 'utf8');
    for (const m of text.matchAll(/['"`](CLUSTER_ERR_[A-Z0-9_]+)['"`]/g)) if (!(m[1]! in ERROR_CODES)) unknown.add(`${f}: ${m[1]}`);
    if (/new Error\(\s*['"`]CLUSTER_ERR_/.test(text)) bare.push(f);
  }
  t.same([...unknown], [], 'no code outside the registry');
  t.same(bare, [], 'coded errors are ClusterErrors, with their fields and status');
});
