import { identityIndex } from '../../src/core/snat-pool.ts';

/**
 * The first service accounts of `namespace` (sa-0, sa-1, …) whose SPIFFE IDs land on index 0 and
 * on index 1 of a per-identity SNAT pool of two: two workloads a firewall must see apart.
 */
export function serviceAccountsOnEachAddress(trustDomain: string, namespace: string): [string, string] {
  const found: Array<string | undefined> = [undefined, undefined];
  for (let i = 0; i < 64 && (found[0] === undefined || found[1] === undefined); i++) {
    found[identityIndex(`spiffe://${trustDomain}/ns/${namespace}/sa/sa-${i}`, 2)] ??= `sa-${i}`;
  }
  if (!found[0] || !found[1]) throw new Error('no two service accounts whose hashes differ');
  return [found[0], found[1]];
}
