import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatCef } from '../../src/audit/formats/cef-format.ts';
import { toEcs } from '../../src/audit/formats/ecs-format.ts';
import { formatText } from '../../src/audit/formats/text-format.ts';
import { closedRecord } from './helpers/sample-records.ts';

const parent = { address: 'proxy.corp.example', ip: '10.0.0.8', port: 3128 };

describe('the parent proxy (rules[].via) in every audit format', () => {
  it('is absent without a parent and present with one', () => {
    const direct = closedRecord();
    const via = closedRecord({ parent });
    assert.equal((toEcs(direct).egress_gateway as unknown) ?? undefined, undefined);
    assert.deepEqual((toEcs(via).egress_gateway as { parent: unknown }).parent, parent);
    assert.ok((toEcs(via).related as { ip: string[] }).ip.includes('10.0.0.8'));
    assert.doesNotMatch(formatCef(direct), /destinationTranslated/);
    assert.match(formatCef(via), / destinationTranslatedAddress=10\.0\.0\.8 destinationTranslatedPort=3128 /);
    assert.doesNotMatch(formatText(direct), / via=/);
    assert.match(formatText(via), / via=proxy\.corp\.example:3128 /);
  });

  it('leaves the IP out until the parent was resolved', () => {
    const record = closedRecord({ parent: { address: 'proxy.corp.example', port: 3128 } });
    assert.deepEqual((toEcs(record).egress_gateway as { parent: unknown }).parent, {
      address: 'proxy.corp.example',
      port: 3128,
    });
    assert.doesNotMatch(formatCef(record), /destinationTranslatedAddress/);
    assert.match(formatCef(record), / destinationTranslatedPort=3128 /);
  });
});
