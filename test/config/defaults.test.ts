// Defaults live once, in SPEC: the `@default` notes an operator reads in cluster.config.ts
// must say what SPEC really does, and every field with a default must have its note.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { SPEC } from '../../cluster.config.ts';
import type { Field } from '../../core/config-fields.ts';
import { DEFAULT_RESTART_POLICY } from '../../supervisors/restart-policy.ts';

/** `path -> the text after @default` for every documented field of the ClusterConfig interface. */
function documentedDefaults(): Map<string, string | null> {
  const src = readFileSync(new URL('../../cluster.config.ts', import.meta.url), 'utf8');
  const body = src.slice(src.indexOf('export interface ClusterConfig {'), src.indexOf('\n}\n', src.indexOf('export interface ClusterConfig {')));
  const out = new Map<string, string | null>();
  const sections: string[] = [];
  let comment = '';
  for (const line of body.split('\n').slice(1)) {
    const trimmed = line.trim();
    if (trimmed.startsWith('/**') || trimmed.startsWith('*')) {
      comment += ` ${trimmed}`;
      continue;
    }
    const section = /^(\w+): \{$/.exec(trimmed);
    if (section) {
      sections.push(section[1]!);
      comment = '';
      continue;
    }
    if (trimmed === '};') {
      sections.pop();
      continue;
    }
    const field = /^(\w+): /.exec(trimmed);
    if (field) {
      const note = /@default (.*?)\s*\*\//.exec(comment);
      out.set([...sections, field[1]!].join('.'), note ? note[1]! : null);
      comment = '';
    }
  }
  return out;
}

function leaves(spec: object, prefix = ''): Array<[string, Field<unknown>]> {
  return Object.entries(spec).flatMap(([k, v]) => (typeof (v as Field<unknown>).parse === 'function' ? [[`${prefix}${k}`, v as Field<unknown>] as [string, Field<unknown>]] : leaves(v as object, `${prefix}${k}.`)));
}

/** Fields whose note describes a default in words (computed at start, or unset). */
const IN_WORDS: Record<string, (d: unknown) => boolean> = {
  nodeId: (d) => d === undefined, // the machine's hostname, computed at start
  'peer.advertise': (d) => d === undefined,
  'acme.directoryUrl': (d) => typeof d === 'string' && d.includes('letsencrypt.org'),
};

t.test('every @default note in the config type says what SPEC does', async (t) => {
  const notes = documentedDefaults();
  for (const [path, field] of leaves(SPEC)) {
    const note = notes.get(path);
    if (note === undefined) {
      t.fail(`${path} is in SPEC but not in the ClusterConfig type`);
      continue;
    }
    if (note === null) {
      t.equal(field.default, undefined, `${path} has a default but no @default note`);
      continue;
    }
    if (note === 'unset') {
      t.ok(field.default === undefined && field.optional, `${path}: unset and optional`);
      continue;
    }
    if (path in IN_WORDS) {
      t.ok(IN_WORDS[path]!(field.default), `${path}: "${note}"`);
      continue;
    }
    let said: unknown;
    try {
      said = JSON.parse(note);
    } catch {
      t.fail(`${path}: @default ${note} is neither a JSON value nor a known description`);
      continue;
    }
    t.same(said, field.default, `${path}: @default ${note}`);
  }
});

t.test('the restart policy an actor system uses without a config is the configuration\'s default', async (t) => {
  t.same(DEFAULT_RESTART_POLICY, { maxRestarts: 5, windowMs: 30_000, backoffMinMs: 100, backoffMaxMs: 10_000, jitter: 0.2 });
});
