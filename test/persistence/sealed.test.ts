import { randomBytes } from 'node:crypto';
import t from 'tap';
import { Secret } from '../../core/secret.ts';
import { generateToken, hashPassword, hashToken, verifyPassword } from '../../persistence/hashing.ts';
import { Sealer } from '../../persistence/sealed.ts';

const sealer = new Sealer(new Secret(randomBytes(32)));
const PLAINTEXT = '-----BEGIN PRIVATE KEY-----\nMIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDD...\n-----END PRIVATE KEY-----\n';

t.test('a sealed value opens to the same bytes and does not contain the plaintext', async (t) => {
  const env = sealer.seal(PLAINTEXT, 'certificates:app.example.com');
  t.equal(sealer.open(env, 'certificates:app.example.com').toString('utf8'), PLAINTEXT);
  t.notOk(env.includes(Buffer.from('PRIVATE KEY')), 'no plaintext in the envelope');
  const again = sealer.seal(PLAINTEXT, 'certificates:app.example.com');
  t.notOk(env.equals(again), 'fresh data key and IV each time');
  t.equal(sealer.open(sealer.seal(Buffer.alloc(0), 'empty'), 'empty').length, 0, 'empty values round-trip');
});

t.test('a flipped byte anywhere in the envelope is detected', async (t) => {
  const env = sealer.seal(PLAINTEXT, 'ctx');
  // Every byte from the wrapped key's IV onwards: IV, wrapped key, tags, ciphertext.
  for (let i = 9; i < env.length; i++) {
    const bad = Buffer.from(env);
    bad[i]! ^= 0x01;
    try {
      sealer.open(bad, 'ctx');
      t.fail(`flip at byte ${i} went undetected`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'CLUSTER_ERR_CRYPTO_TAMPERED') throw err;
    }
  }
  t.pass(`all ${env.length - 9} single-bit flips detected`);
  const badVersion = Buffer.from(env);
  badVersion[0] = 9;
  t.throws(() => sealer.open(badVersion, 'ctx'), { code: 'CLUSTER_ERR_CRYPTO_MALFORMED' });
  t.throws(() => sealer.open(env.subarray(0, 50), 'ctx'), { code: 'CLUSTER_ERR_CRYPTO_MALFORMED' });
});

t.test('a value sealed for one row does not open for another (context is authenticated)', async (t) => {
  const env = sealer.seal('key-a', 'certificates:a.example.com');
  t.throws(() => sealer.open(env, 'certificates:b.example.com'), { code: 'CLUSTER_ERR_CRYPTO_TAMPERED' });
});

t.test('a wrong cluster key fails loudly with both key ids', async (t) => {
  const env = sealer.seal('x', 'ctx');
  const other = new Sealer(new Secret(randomBytes(32)));
  t.throws(() => other.open(env, 'ctx'), { code: 'CLUSTER_ERR_CRYPTO_WRONG_KEY', fields: { keyId: sealer.keyId, expectedKeyId: other.keyId } });
});

t.test('passwords hash with scrypt; only the right password verifies', async (t) => {
  const h1 = await hashPassword('correct horse battery staple');
  const h2 = await hashPassword('correct horse battery staple');
  t.match(h1, /^scrypt\$32768\$8\$1\$/);
  t.not(h1, h2, 'salted');
  t.ok(await verifyPassword('correct horse battery staple', h1));
  t.notOk(await verifyPassword('correct horse battery stapler', h1));
  t.notOk(await verifyPassword('x', 'scrypt$garbage'), 'malformed stored hash is a plain mismatch');
  t.notOk(await verifyPassword('x', 'scrypt$99999999$8$1$AAAA$AAAA'), 'absurd parameters are refused, not computed');
});

t.test('generated tokens are unique and hash to a stable 32-byte digest', async (t) => {
  const a = generateToken();
  t.not(a, generateToken());
  t.ok(a.length >= 43);
  t.ok(hashToken(a).equals(hashToken(a)));
  t.equal(hashToken(a).length, 32);
});

t.test('generated tokens never start with a dash (they are passed on command lines)', async (t) => {
  const first = new Set(Array.from({ length: 5000 }, () => generateToken()[0]));
  t.notOk(first.has('-'), 'no token of 5,000 starts with "-"');
  t.ok(first.size > 40, 'and the other first characters all occur');
});
