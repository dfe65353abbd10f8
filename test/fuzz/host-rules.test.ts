import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalHost } from '../../src/core/host-name.ts';
import { canonicalIp } from '../../src/core/ip-set.ts';
import { canonicalHostMatches, compileHostGlob, hostMatches, type SegmentGlob } from '../../src/policy/glob.ts';
import { fuzzOptions, tokenString } from './fuzz-options.ts';

// Host spellings: plain labels, case, the dots and delimiters IDNA and the URL parser treat
// specially, escapes, and characters IDNA maps or deletes.
const HOST_TOKENS = [
  'a',
  'b',
  'Z',
  'x',
  'xn--',
  'example',
  'com',
  '0',
  '1',
  '9',
  '127',
  '255',
  '0x7f',
  '-',
  '_',
  '.',
  '..',
  '*',
  '**',
  ' ',
  '%',
  '%61',
  '\\',
  '\\097',
  '/',
  '?',
  '#',
  '@',
  ':',
  '[',
  ']',
  'ü',
  'ß',
  'İ',
  'ﬁ',
  'Ａ',
  '\u3002',
  '\uff0e',
  '\uff61',
  '\u2024',
  '\u2488',
  '\u00ad',
  '\u200b',
  '\u200d',
  '\u0301',
  'ا',
  '\uff0f',
];
const rawHost = tokenString(HOST_TOKENS);
const dottedHost = fc
  .array(tokenString(HOST_TOKENS, 4), { minLength: 1, maxLength: 5 })
  .map((labels) => labels.join('.'));
const anyHost = fc.oneof(
  rawHost,
  dottedHost,
  fc.domain(),
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV6().map((ip) => `[${ip}]`),
);

function compiled(pattern: string): SegmentGlob | undefined {
  const result = compileHostGlob(pattern);
  return 'glob' in result ? result.glob : undefined;
}

/** An independent matcher: the glob written as a regular expression over the dotted name. */
function referenceMatch(glob: SegmentGlob, host: string): boolean {
  const parts = glob.map((t) =>
    t === '*' ? '[^.]+' : t === '**' ? '[^.]+(?:\\.[^.]+)*' : t.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&'),
  );
  return new RegExp(`^${parts.join('\\.')}$`).test(host);
}

describe('fuzz: host canonicaliser', () => {
  it('is idempotent and only ever returns lower-case ASCII names or canonical IPs', () => {
    fc.assert(
      fc.property(anyHost, (raw) => {
        const canonical = canonicalHost(raw);
        if (canonical === undefined) return;
        assert.equal(canonicalHost(canonical), canonical);
        if (isIP(canonical) !== 0) assert.equal(canonicalIp(canonical), canonical);
        else assert.match(canonical, /^[a-z0-9_.-]{1,253}$/);
      }),
      fuzzOptions(2000),
    );
  });

  it('treats labels independently: adding a label before or after adds exactly that label', () => {
    fc.assert(
      fc.property(anyHost, (raw) => {
        const canonical = canonicalHost(raw);
        if (canonical === undefined || isIP(canonical) !== 0 || raw.endsWith('.') || canonical.length > 240) return;
        assert.equal(canonicalHost(`${raw}.example`), `${canonical}.example`, `suffix on ${JSON.stringify(raw)}`);
        assert.equal(canonicalHost(`a.${raw}`), `a.${canonical}`, `prefix on ${JSON.stringify(raw)}`);
      }),
      fuzzOptions(2000),
    );
  });

  it('gives every IP literal its canonical form, bracketed or not', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        const canonical = canonicalIp(ip);
        assert.ok(canonical !== undefined, ip);
        assert.equal(canonicalHost(ip), canonical);
        if (isIP(ip) === 6) assert.equal(canonicalHost(`[${ip}]`), canonical);
      }),
      fuzzOptions(1500),
    );
  });
});

describe('fuzz: host globs', () => {
  it('compiles every accepted host spelling to a pattern that matches it in any spelling', () => {
    fc.assert(
      fc.property(anyHost, (raw) => {
        const canonical = canonicalHost(raw);
        if (canonical === undefined || isIP(canonical) !== 0) return;
        const glob = compiled(raw);
        assert.ok(glob, `${JSON.stringify(raw)} is a valid host but was refused as a pattern`);
        assert.equal(glob.join('.'), canonical);
        assert.equal(hostMatches(glob, raw), true);
        assert.equal(hostMatches(compiled(canonical) as SegmentGlob, raw), true);
      }),
      fuzzOptions(2000),
    );
  });

  it('never compiles a pattern that can never match (its probe instance matches)', () => {
    fc.assert(
      fc.property(anyHost, (pattern) => {
        const glob = compiled(pattern);
        if (!glob) return;
        const probe = glob.map((t) => (t === '*' || t === '**' ? 'x' : t)).join('.');
        assert.equal(canonicalHost(probe), probe, `probe of ${JSON.stringify(pattern)}`);
        assert.equal(canonicalHostMatches(glob, probe), true, JSON.stringify(pattern));
      }),
      fuzzOptions(2000),
    );
  });

  it('refuses every IP literal as a host pattern and never matches an IP literal with a glob', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.constantFrom('**', '*.*.*.*', '*', '**.1'), (ip, pattern) => {
        const result = compileHostGlob(ip);
        assert.ok('problem' in result && /to\.cidrs/.test(result.problem), ip);
        const glob = compiled(pattern);
        if (glob) assert.equal(hostMatches(glob, ip), false, `${pattern} matched ${ip}`);
      }),
      fuzzOptions(1500),
    );
  });

  it('agrees with a regular-expression reference on wildcard patterns cut from real names', () => {
    const nameAndGlob = fc
      .domain()
      .map((d) => canonicalHost(d))
      .filter((d): d is string => d !== undefined && isIP(d) === 0)
      .chain((name) => {
        const labels = name.split('.');
        return fc.tuple(
          fc.constant(name),
          fc.array(fc.constantFrom('keep', '*', '**', 'other'), { minLength: labels.length, maxLength: labels.length }),
        );
      });
    fc.assert(
      fc.property(nameAndGlob, fc.domain(), ([name, edits], other) => {
        const labels = name.split('.');
        const pattern = labels
          .map((l, i) => (edits[i] === 'keep' ? l : edits[i] === 'other' ? 'q' : edits[i]))
          .join('.');
        const glob = compiled(pattern);
        if (!glob) return;
        if (!edits.includes('other')) assert.equal(hostMatches(glob, name), true, `${pattern} vs ${name}`);
        for (const host of [name, canonicalHost(other) ?? 'a.example']) {
          if (isIP(host) === 0)
            assert.equal(canonicalHostMatches(glob, host), referenceMatch(glob, host), `${pattern} vs ${host}`);
        }
      }),
      fuzzOptions(2000),
    );
  });
});
