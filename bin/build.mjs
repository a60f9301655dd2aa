// The bundle the `cluster` command runs: the TypeScript sources of bin/cluster.ts and all it
// imports, compiled by esbuild into one ES module (packages stay external, loaded from
// node_modules as usual). A node then carries no TypeScript loader: tsx's loader thread and
// caches cost about 50 MB of resident memory in every node process (measured on an idle
// import of the node code: 172 MB under tsx, 113-128 MB from the bundle).
//
// freshBundle() rebuilds when any source it was made from changed (mtime), so an edited
// checkout never runs stale code; processes starting together may each rebuild, and each
// renames its own complete file into place.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const BUNDLE = join(root, 'node_modules', '.cache', 'cluster', 'cluster.mjs');
const INPUTS = `${BUNDLE}.inputs.json`;

/** Each source keeps its own `import.meta.url`: paths beside it (migrations, ui/dist, require of packages) resolve as in the source tree. */
const ownUrl = {
  name: 'own-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => ({
      contents: readFileSync(args.path, 'utf8').replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)),
      loader: 'ts',
    }));
  },
};

function stale() {
  try {
    const inputs = JSON.parse(readFileSync(INPUTS, 'utf8'));
    statSync(BUNDLE);
    return Object.entries(inputs).some(([file, mtime]) => statSync(file, { throwIfNoEntry: false })?.mtimeMs !== mtime);
  } catch {
    return true;
  }
}

/** The bundle's file URL, rebuilt first if missing or older than a source. */
export async function freshBundle() {
  if (!stale()) return pathToFileURL(BUNDLE).href;
  const esbuild = await import('esbuild');
  mkdirSync(dirname(BUNDLE), { recursive: true });
  const tmp = `${BUNDLE}.${process.pid}.${randomBytes(4).toString('hex')}`;
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [join(root, 'bin', 'cluster.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    // No keepNames: it wraps every named closure in a call that defines its `name` property,
    // which costs each closure made about 250 bytes of heap (measured: 1,747 vs 468 bytes for
    // five), and a node makes dozens per connection. Stack traces still name our functions
    // (the source's names; esbuild renames only a clash between modules, `load2` for `load`);
    // NODE_OPTIONS=--enable-source-maps maps them to the sources.
    keepNames: false,
    sourcemap: 'linked',
    outfile: tmp,
    metafile: true,
    logLevel: 'warning',
    plugins: [ownUrl],
  });
  await esbuild.stop();
  // This file too: a change of build options must rebuild as well.
  const inputs = Object.fromEntries([...Object.keys(result.metafile.inputs).map((f) => resolve(root, f)), fileURLToPath(import.meta.url)].map((f) => [f, statSync(f).mtimeMs]));
  // The map names the bundle it belongs to: renamed with it.
  writeFileSync(tmp, readFileSync(tmp, 'utf8').replace(/\/\/# sourceMappingURL=.*$/m, '//# sourceMappingURL=cluster.mjs.map'));
  renameSync(`${tmp}.map`, `${BUNDLE}.map`);
  renameSync(tmp, BUNDLE);
  writeFileSync(`${INPUTS}.${process.pid}`, JSON.stringify(inputs));
  renameSync(`${INPUTS}.${process.pid}`, INPUTS);
  return pathToFileURL(BUNDLE).href;
}

// `node bin/build.mjs`: build now (the bootstrap does, so nodes starting together find it ready).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await freshBundle();
