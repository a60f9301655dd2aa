// The operators' error-code reference (docs/errors.md) against the one registry in
// core/errors.ts: an operator looking up a code they were shown must find it, with the
// HTTP status the API really answers with.
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
