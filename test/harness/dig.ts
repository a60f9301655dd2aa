// Runs the real `dig` against a node and parses what a user reads from it.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DigResult {
  status: string;
  flags: string[];
  /** "name ttl type data" without the class, name lower-cased. */
  answer: string[];
  authority: string[];
  /** rdata of the answer section, sorted. */
  short: string[];
}

export async function dig(server: string, name: string, type: string, extra: string[] = []): Promise<DigResult> {
  const { stdout } = await run('dig', [`@${server}`, name, type, '+norec', '+time=2', '+tries=1', '+noall', '+comments', '+answer', '+authority', ...extra]);
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? 'NONE';
  const flags = (/flags: ([a-z ]+);/.exec(stdout)?.[1] ?? '').trim().split(/\s+/);
  const sections: Record<string, string[]> = { ANSWER: [], AUTHORITY: [] };
  let current: string | undefined;
  for (const line of stdout.split('\n')) {
    const head = /^;; (\w+) SECTION:/.exec(line);
    if (head) current = head[1];
    else if (line.startsWith(';') || !line.trim()) continue;
    else if (current && sections[current]) {
      const [n, ttl, , t, ...data] = line.trim().split(/\s+/);
      sections[current]!.push(`${n!.toLowerCase()} ${ttl} ${t} ${data.join(' ')}`);
    }
  }
  const short = sections.ANSWER!.map((l) => l.split(' ').slice(3).join(' ')).sort();
  return { status, flags, answer: sections.ANSWER!, authority: sections.AUTHORITY!, short };
}
