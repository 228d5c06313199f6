import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelayMs } from '../../src/core/backoff.js';

test('backoff grows by the factor and stops at the cap', () => {
  const config = { initialMs: 100, maxMs: 1_000, factor: 2 };
  const top = (attempt: number) => backoffDelayMs(attempt, () => 0.999999, config);
  const bottom = (attempt: number) => backoffDelayMs(attempt, () => 0, config);
  assert.deepEqual([0, 1, 2, 3, 4, 10].map(bottom), [50, 100, 200, 400, 500, 500]);
  assert.deepEqual([0, 1, 2, 3, 4, 10].map(top), [100, 200, 400, 800, 1000, 1000]);
});

test('jitter spreads retries within [ceiling/2, ceiling]', () => {
  let x = 1;
  const random = () => ((x = (x * 48271) % 2147483647) / 2147483647);
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelayMs(3, random, { initialMs: 100, maxMs: 5_000, factor: 2 });
    assert.ok(d >= 400 && d <= 800, String(d));
  }
});
