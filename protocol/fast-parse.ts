// Schema checks without zod's copy, for the messages every node reads by the thousand (route
// and zone snapshots on pub/sub, in a reconnect storm two to four per moved site on every
// node). zod 3 builds a new object tree for each value it parses, and in a 4,000-site storm
// those parses were a third of all a survivor allocated (and so of its collector's work).
//
// `fastParse(schema, value)` walks the schema's definition once (compiled, cached per schema)
// and returns the value itself when zod would return an equal one: every field of the right
// type and within its checks, no key zod would strip, no default to fill in. Anything else,
// an invalid value or a part of a schema this does not know (refinements, transforms, unions,
// string formats), goes to zod's own parse: its result or its error, exactly as before. So the
// fast path can only ever say yes to what zod accepts unchanged; zod keeps every no.
import type { z } from 'zod';

type Check = (value: unknown) => boolean;

const compiled = new WeakMap<z.ZodTypeAny, Check>();

/** zod's `schema.parse(value)`, skipping its copy when the value is already what it would return. */
export function fastParse<S extends z.ZodTypeAny>(schema: S, value: unknown): z.infer<S> {
  return checkerOf(schema)(value) ? (value as z.infer<S>) : schema.parse(value);
}

/** zod's `schema.safeParse(value)`, likewise. */
export function fastSafeParse<S extends z.ZodTypeAny>(schema: S, value: unknown): z.SafeParseReturnType<unknown, z.infer<S>> {
  return checkerOf(schema)(value) ? { success: true, data: value as z.infer<S> } : schema.safeParse(value);
}

/** True only when zod would accept `value` and return an equal value (exported for the tests). */
export function checkerOf(schema: z.ZodTypeAny): Check {
  let check = compiled.get(schema);
  if (!check) {
    check = compile(schema);
    compiled.set(schema, check);
  }
  return check;
}

const never: Check = () => false;

/** Every check passes (a plain loop: this runs per field of every message, and allocates nothing). */
function all(checks: Check[], v: unknown): boolean {
  for (let i = 0; i < checks.length; i++) if (!checks[i]!(v)) return false;
  return true;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** A key zod leaves out of what it returns (its objects and records drop `__proto__`). */
const DROPPED_KEY = '__proto__';

function compile(schema: z.ZodTypeAny): Check {
  // zod 3's definitions (zod/v3/types.d.ts); a kind not handled here is never taken fast.
  // Not a zod 3 schema at all (no definition): never fast.
  const def = (schema._def ?? {}) as Record<string, any>;
  switch (def.typeName as string | undefined) {
    case 'ZodString': {
      if (def.coerce) return never;
      const checks: Check[] = [];
      for (const c of def.checks as Array<{ kind: string; value?: number; regex?: RegExp }>) {
        if (c.kind === 'min') checks.push((s) => (s as string).length >= c.value!);
        else if (c.kind === 'max') checks.push((s) => (s as string).length <= c.value!);
        else if (c.kind === 'length') checks.push((s) => (s as string).length === c.value!);
        else if (c.kind === 'regex') {
          const re = c.regex!;
          checks.push((s) => ((re.lastIndex = 0), re.test(s as string)));
        } else return never; // formats (uuid, email, ...) and transforms (trim, toLowerCase, ...)
      }
      return (v) => typeof v === 'string' && all(checks, v);
    }
    case 'ZodNumber': {
      if (def.coerce) return never;
      const checks: Check[] = [];
      for (const c of def.checks as Array<{ kind: string; value?: number; inclusive?: boolean }>) {
        if (c.kind === 'int') checks.push((n) => Number.isInteger(n));
        else if (c.kind === 'finite') checks.push((n) => Number.isFinite(n));
        else if (c.kind === 'min') checks.push(c.inclusive ? (n) => (n as number) >= c.value! : (n) => (n as number) > c.value!);
        else if (c.kind === 'max') checks.push(c.inclusive ? (n) => (n as number) <= c.value! : (n) => (n as number) < c.value!);
        else return never;
      }
      return (v) => typeof v === 'number' && !Number.isNaN(v) && all(checks, v);
    }
    case 'ZodBoolean':
      return def.coerce ? never : (v) => typeof v === 'boolean';
    case 'ZodNull':
      return (v) => v === null;
    case 'ZodUnknown':
    case 'ZodAny':
      return () => true; // zod returns these as they are
    case 'ZodLiteral': {
      const lit = def.value;
      return (v) => v === lit;
    }
    case 'ZodEnum': {
      const values = new Set<unknown>(def.values as unknown[]);
      return (v) => typeof v === 'string' && values.has(v);
    }
    case 'ZodNullable': {
      const inner = lazy(def.innerType);
      return (v) => v === null || inner()(v);
    }
    case 'ZodOptional': {
      const inner = lazy(def.innerType);
      return (v) => v === undefined || inner()(v);
    }
    case 'ZodDefault': {
      // Missing: zod fills the default in, a different value.
      const inner = lazy(def.innerType);
      return (v) => v !== undefined && inner()(v);
    }
    case 'ZodArray': {
      const item = lazy(def.type);
      const min = def.minLength?.value as number | undefined;
      const max = def.maxLength?.value as number | undefined;
      const exact = def.exactLength?.value as number | undefined;
      return (v) => {
        if (!Array.isArray(v)) return false;
        if ((min !== undefined && v.length < min) || (max !== undefined && v.length > max) || (exact !== undefined && v.length !== exact)) return false;
        const check = item();
        for (let i = 0; i < v.length; i++) if (!(i in v) || !check(v[i])) return false;
        return true;
      };
    }
    case 'ZodRecord': {
      const key = lazy(def.keyType);
      const value = lazy(def.valueType);
      return (v) => {
        if (!isPlainObject(v)) return false;
        const k = key();
        const val = value();
        for (const name in v) {
          const item = v[name];
          if (name === DROPPED_KEY || item === undefined || !k(name) || !val(item)) return false;
        }
        return true;
      };
    }
    case 'ZodObject': {
      // Unknown keys: zod strips them (the default) or refuses them (strict), either way not this value.
      if (def.catchall?._def?.typeName !== 'ZodNever' || (def.unknownKeys !== 'strip' && def.unknownKeys !== 'strict')) return never;
      const shape = def.shape() as Record<string, z.ZodTypeAny>;
      const names = Object.keys(shape);
      const fields = names.map((name) => lazy(shape[name]!));
      const known = new Set(names);
      return (v) => {
        if (!isPlainObject(v)) return false;
        for (const name in v) if (!known.has(name) || name === DROPPED_KEY || v[name] === undefined) return false;
        for (let i = 0; i < names.length; i++) if (!fields[i]!()(v[names[i]!])) return false;
        return true;
      };
    }
    case 'ZodDiscriminatedUnion': {
      const key = def.discriminator as string;
      const options = new Map<unknown, () => Check>([...(def.optionsMap as Map<unknown, z.ZodTypeAny>)].map(([tag, s]) => [tag, lazy(s)]));
      return (v) => {
        if (!isPlainObject(v)) return false;
        const option = options.get(v[key]);
        return option !== undefined && option()(v);
      };
    }
    default:
      // Unions (zod returns the first option that parses, maybe stripped), effects, lazy, and the rest.
      return never;
  }
}

/** A nested schema's checker, compiled at its first use (schemas may share parts). */
function lazy(schema: z.ZodTypeAny): () => Check {
  let check: Check | undefined;
  return () => (check ??= checkerOf(schema));
}
