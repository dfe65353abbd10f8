import { canonicalHost } from '../core/host-name.ts';
import { IpSet } from '../core/ip-set.ts';
import { type SnatPool, type SnatSelection, snatPool } from '../core/snat-pool.ts';
import { parseSpiffeId, parseTrustDomain } from '../identity/spiffe-id.ts';
import { compileHostGlob, compileSpiffeGlob, type SegmentGlob } from './glob.ts';

/** One allow/deny rule as written in the configuration (`rules[]`). */
export interface RuleSpec {
  readonly name: string;
  readonly listeners?: readonly string[];
  readonly from?: {
    readonly namespaces?: readonly string[];
    readonly serviceAccounts?: readonly string[];
    readonly spiffeIds?: readonly string[];
    readonly trustDomains?: readonly string[];
  };
  readonly to?: {
    readonly hosts?: readonly string[];
    readonly ports?: readonly number[];
    readonly cidrs?: readonly string[];
  };
  readonly action: 'allow' | 'deny';
  readonly enforce?: 'always';
  readonly snat?: string | readonly string[];
  readonly snatSelection?: SnatSelection;
  /** `http://host:port` of a parent proxy (connect mode). */
  readonly via?: string;
}

/** A parent proxy a rule's traffic goes through; `host` is canonical (an IP or a name to resolve). */
export interface ParentProxy {
  readonly host: string;
  readonly port: number;
  /** As written, for audit records and messages. */
  readonly url: string;
}

export interface CompiledRule {
  readonly name: string;
  readonly index: number;
  readonly action: 'allow' | 'deny';
  readonly listeners?: ReadonlySet<string>;
  readonly from?: {
    readonly namespaces?: ReadonlySet<string>;
    readonly serviceAccounts?: ReadonlySet<string>;
    readonly spiffeIds?: readonly SegmentGlob[];
    readonly trustDomains?: ReadonlySet<string>;
  };
  readonly to?: {
    readonly hosts?: readonly SegmentGlob[];
    readonly ports?: ReadonlySet<number>;
    readonly cidrs?: IpSet;
  };
  /** `always`: the deny holds on report listeners too. */
  readonly enforce?: 'always';
  readonly snat?: SnatPool;
  readonly via?: ParentProxy;
}

export interface CompiledPolicy {
  /** The gateway's own trust domain: the one `from.namespaces` and `from.serviceAccounts` mean. */
  readonly trustDomain: string;
  readonly rules: readonly CompiledRule[];
}

/** A problem found while compiling, with the key path inside `rules`, e.g. `rules[2].to.cidrs[0]`. */
export class PolicyCompileError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

const SA_REF = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const K8S_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function compileHost(pattern: string, path: string): SegmentGlob {
  const result = compileHostGlob(pattern);
  if ('problem' in result) throw new PolicyCompileError(path, result.problem);
  return result.glob;
}

/**
 * The trust domains a rule may name: every configured one, or `undefined` when they arrive at run
 * time (Workload API federation), where only the syntax can be checked.
 */
type KnownDomains = ReadonlySet<string> | undefined;

function checkDomain(domain: string, known: KnownDomains, path: string, what: string): void {
  if (known && !known.has(domain))
    throw new PolicyCompileError(
      path,
      `${what} is outside the configured trust domains (${[...known].join(', ')}); it could never match`,
    );
}

function compileTrustDomain(domain: string, known: KnownDomains, path: string): string {
  try {
    parseTrustDomain(domain);
  } catch (error) {
    throw new PolicyCompileError(path, (error as Error).message);
  }
  checkDomain(domain, known, path, `trust domain ${domain}`);
  return domain;
}

function compileSpiffe(pattern: string, known: KnownDomains, path: string): SegmentGlob {
  // Validate the glob by substituting a legal segment for each wildcard and parsing the result.
  const probe = pattern.replace(/\/\*\*?(?=\/|$)/g, '/x');
  let id: ReturnType<typeof parseSpiffeId>;
  try {
    id = parseSpiffeId(probe);
  } catch (error) {
    throw new PolicyCompileError(path, (error as Error).message);
  }
  checkDomain(id.trustDomain, known, path, pattern);
  const glob = compileSpiffeGlob(pattern);
  const doubleStar = glob.indexOf('**');
  if (doubleStar !== -1 && doubleStar !== glob.length - 1)
    throw new PolicyCompileError(path, '`**` is only allowed as the last segment');
  return glob;
}

function compileVia(url: string, action: RuleSpec['action'], path: string): ParentProxy {
  if (action !== 'allow') throw new PolicyCompileError(path, 'only an allow rule can name a parent proxy');
  const match = /^http:\/\/(\[[^\]]+\]|[^:/@]+):(\d{1,5})\/?$/.exec(url);
  const host = match?.[1] ? canonicalHost(match[1]) : undefined;
  const port = Number(match?.[2]);
  if (!host || !(port >= 1 && port <= 65535))
    throw new PolicyCompileError(
      path,
      `expected http://host:port with a valid host name or IP, got ${JSON.stringify(url)}`,
    );
  return Object.freeze({ host, port, url });
}

/** Checks the plain references a rule makes: listener names, namespaces, service accounts. */
function checkReferences(rule: RuleSpec, at: string, listenerNames: readonly string[]): void {
  rule.listeners?.forEach((name, i) => {
    if (!listenerNames.includes(name))
      throw new PolicyCompileError(`${at}.listeners[${i}]`, `no listener is named ${JSON.stringify(name)}`);
  });
  rule.from?.namespaces?.forEach((ns, i) => {
    if (!K8S_NAME.test(ns))
      throw new PolicyCompileError(
        `${at}.from.namespaces[${i}]`,
        `not a Kubernetes namespace name: ${JSON.stringify(ns)}`,
      );
  });
  rule.from?.serviceAccounts?.forEach((sa, i) => {
    if (!SA_REF.test(sa))
      throw new PolicyCompileError(
        `${at}.from.serviceAccounts[${i}]`,
        `expected "<namespace>/<service-account>", got ${JSON.stringify(sa)}`,
      );
  });
}

/** One IpSet for `to.cidrs`, after each entry is checked alone so the error names the bad one. */
function compileCidrs(cidrs: readonly string[] | undefined, at: string): IpSet | undefined {
  if (!cidrs) return undefined;
  cidrs.forEach((cidr, i) => {
    try {
      new IpSet([cidr]);
    } catch {
      throw new PolicyCompileError(`${at}.to.cidrs[${i}]`, `not a CIDR range: ${JSON.stringify(cidr)}`);
    }
  });
  return new IpSet(cidrs);
}

function compileFrom(from: NonNullable<RuleSpec['from']>, known: KnownDomains, at: string): CompiledRule['from'] {
  return Object.freeze({
    ...(from.namespaces ? { namespaces: new Set(from.namespaces) } : {}),
    ...(from.serviceAccounts ? { serviceAccounts: new Set(from.serviceAccounts) } : {}),
    ...(from.spiffeIds
      ? { spiffeIds: from.spiffeIds.map((p, i) => compileSpiffe(p, known, `${at}.from.spiffeIds[${i}]`)) }
      : {}),
    ...(from.trustDomains
      ? {
          trustDomains: new Set(
            from.trustDomains.map((d, i) => compileTrustDomain(d, known, `${at}.from.trustDomains[${i}]`)),
          ),
        }
      : {}),
  });
}

function compileTo(to: NonNullable<RuleSpec['to']>, cidrs: IpSet | undefined, at: string): CompiledRule['to'] {
  return Object.freeze({
    ...(to.hosts ? { hosts: to.hosts.map((h, i) => compileHost(h, `${at}.to.hosts[${i}]`)) } : {}),
    ...(to.ports ? { ports: new Set(to.ports) } : {}),
    ...(cidrs ? { cidrs } : {}),
  });
}

function compileRule(
  rule: RuleSpec,
  index: number,
  known: KnownDomains,
  listenerNames: readonly string[],
): CompiledRule {
  const at = `rules[${index}]`;
  checkReferences(rule, at, listenerNames);
  const cidrs = compileCidrs(rule.to?.cidrs, at);
  return Object.freeze({
    name: rule.name,
    index,
    action: rule.action,
    ...(rule.listeners ? { listeners: new Set(rule.listeners) } : {}),
    ...(rule.from ? { from: compileFrom(rule.from, known, at) } : {}),
    ...(rule.to ? { to: compileTo(rule.to, cidrs, at) } : {}),
    ...(rule.enforce ? { enforce: rule.enforce } : {}),
    ...(rule.snat ? { snat: snatPool(rule.snat, rule.snatSelection) } : {}),
    ...(rule.via ? { via: compileVia(rule.via, rule.action, `${at}.via`) } : {}),
  });
}

/**
 * Compiles `rules`. `trustDomains` lists every configured trust domain (the own one is added);
 * `'any'` accepts every syntactically valid one (trust domains that come from a Workload API agent).
 */
export function compilePolicy(
  rules: readonly RuleSpec[],
  trustDomain: string,
  listenerNames: readonly string[],
  trustDomains: readonly string[] | 'any' = [],
): CompiledPolicy {
  const known: KnownDomains = trustDomains === 'any' ? undefined : new Set([trustDomain, ...trustDomains]);
  const seen = new Set<string>();
  const compiled = rules.map((rule, index): CompiledRule => {
    if (seen.has(rule.name))
      throw new PolicyCompileError(`rules[${index}].name`, `duplicate rule name ${JSON.stringify(rule.name)}`);
    seen.add(rule.name);
    return compileRule(rule, index, known, listenerNames);
  });
  return Object.freeze({ trustDomain, rules: Object.freeze(compiled) });
}
