import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { canonicalHost } from '../../src/core/host-name.ts';
import { parseCidr } from '../../src/core/ip-set.ts';
import { compilePolicy, PolicyCompileError } from '../../src/policy/compile-policy.ts';
import { canonicalHostMatches } from '../../src/policy/glob.ts';
import { fuzzOptions, tokenString } from './fuzz-options.ts';

const SOURCE = 'cfg.yaml';
const base = () => ({
  identity: { trustDomain: 'cluster.local', trustAnchors: 'a.pem', cert: 'c.pem', key: 'k.pem' },
  listeners: [{ name: 'egress', listen: '127.0.0.1:3128', mode: 'connect' }],
  rules: [{ name: 'r', to: { hosts: ['*.example.com'], ports: [443] }, action: 'allow' }],
  timeouts: { idle: '5m' },
});

type Outcome = { config: ReturnType<typeof parseConfig> } | { message: string };

/** parseConfig either returns a frozen config or throws EGW_CONFIG_INVALID naming the file: never anything else. */
function load(text: string): Outcome {
  try {
    return { config: parseConfig(text, SOURCE) };
  } catch (error) {
    assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'), `${JSON.stringify(text.slice(0, 200))}: ${error}`);
    const message = (error as Error).message;
    // A YAML syntax error carries a code frame after its first line; schema issues are one a line.
    if (message.startsWith(`${SOURCE}: YAML error: `)) return { message };
    const [head, ...issues] = message.split('\n');
    assert.equal(head, 'invalid configuration', message);
    for (const line of issues) assert.ok(line.startsWith(`  ${SOURCE}: `), `an issue without the file: ${line}`);
    return { message };
  }
}

function deepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  return Object.isFrozen(value) && Object.values(value).every(deepFrozen);
}

const scalar = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('10s', '5m', '-1s', '1e99', '127.0.0.1:0', '[::1]:1', 'connect', 'tcp', 'allow', 'deny', '**'),
);
const value = fc.letrec((tie) => ({
  any: fc.oneof(
    { maxDepth: 3 },
    scalar,
    fc.array(tie('any'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('any'), { maxKeys: 3 }),
  ),
})).any;
const KEYS = [
  'identity',
  'listeners',
  'rules',
  'timeouts',
  'limits',
  'admin',
  'resolver',
  'audit',
  'workers',
  '0',
  'name',
  'to',
  'hosts',
  'cidrs',
  'listen',
  'mode',
  'idle',
  'snat',
  'upstream',
  'from',
  'action',
];

/** Sets `leaf` somewhere along a random key path in a copy of the base configuration. */
function mutate(path: readonly string[], leaf: unknown): Record<string, unknown> {
  const root: Record<string, unknown> = base();
  let node: Record<string, unknown> = root;
  path.forEach((key, i) => {
    if (i === path.length - 1) {
      node[key] = leaf;
      return;
    }
    const next = node[key];
    node[key] = next !== null && typeof next === 'object' ? next : {};
    node = node[key] as Record<string, unknown>;
  });
  return root;
}

describe('fuzz: configuration loader', () => {
  it('turns any text into a config or EGW_CONFIG_INVALID with every issue naming the file', () => {
    const yamlish = tokenString([
      'a',
      ':',
      ' ',
      '\n',
      '  ',
      '- ',
      '[',
      ']',
      '{',
      '}',
      ',',
      '"',
      "'",
      '&x',
      '*x',
      '!!str',
      '#',
      'identity',
      'rules',
      '1',
      '%',
      '\t',
    ]);
    fc.assert(
      fc.property(fc.oneof(yamlish, fc.string({ maxLength: 40 })), (text) => void load(text)),
      fuzzOptions(600),
    );
  });

  it('refuses or accepts mutated configurations the same way, and an accepted one is frozen and reloads to itself', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 4 }), value, (path, leaf) => {
        const outcome = load(stringify(mutate(path, leaf)));
        if (!('config' in outcome)) return;
        assert.ok(deepFrozen(outcome.config));
        const again = load(stringify(outcome.config));
        assert.ok(
          'config' in again,
          `a loaded configuration did not load again: ${'message' in again ? again.message : ''}`,
        );
        assert.deepEqual(again.config, outcome.config);
      }),
      fuzzOptions(600),
    );
  });

  it('compiles loaded rules or names the bad key; a compiled host pattern always has a host it matches', () => {
    const pattern = fc.oneof(
      fc.domain(),
      fc.ipV4(),
      fc.ipV6(),
      tokenString(['*', '**', '.', 'a', 'Example', '0', '203', '113', '-', ':', '/', '24', '[', ']', 'ü', '%']),
    );
    fc.assert(
      fc.property(
        fc.array(pattern, { minLength: 1, maxLength: 3 }),
        fc.array(pattern, { maxLength: 2 }),
        (hosts, cidrs) => {
          const config = base();
          config.rules = [{ name: 'r', to: { hosts, ...(cidrs.length ? { cidrs } : {}) }, action: 'deny' }] as never;
          const outcome = load(stringify(config));
          if (!('config' in outcome)) return;
          try {
            const policy = compilePolicy(outcome.config.rules, 'cluster.local', ['egress']);
            for (const glob of policy.rules[0]?.to?.hosts ?? []) {
              const probe = glob.map((t) => (t === '*' || t === '**' ? 'x' : t)).join('.');
              assert.equal(canonicalHostMatches(glob, canonicalHost(probe) ?? ''), true, glob.join('.'));
            }
            for (const cidr of cidrs) {
              const parsed = parseCidr(cidr);
              assert.ok(parsed && policy.rules[0]?.to?.cidrs?.has(parsed.address), cidr);
            }
          } catch (error) {
            assert.ok(error instanceof PolicyCompileError, String(error));
            const at = /^rules\[0\]\.to\.(hosts|cidrs)\[(\d+)\]$/.exec(error.path);
            assert.ok(at, error.path);
            const entry = (at[1] === 'hosts' ? hosts : cidrs)[Number(at[2])] as string;
            const alone = base();
            alone.rules = [{ name: 'r', to: { [at[1] as string]: [entry] }, action: 'deny' }] as never;
            assert.throws(
              () => compilePolicy(parseConfig(stringify(alone), SOURCE).rules, 'cluster.local', ['egress']),
              PolicyCompileError,
            );
          }
        },
      ),
      fuzzOptions(600),
    );
  });
});
