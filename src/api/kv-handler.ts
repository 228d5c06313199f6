import { KvCondition } from '../wire/index.js';
import type { Envelope } from '../wire/index.js';
import type { FramedConnection } from '../runtime/connection.js';
import type { GrapevineNode } from '../runtime/node.js';
import { KvError } from '../runtime/kv-access.js';
import type { KvCondition as Condition } from '../runtime/kv-access.js';

/** Largest page of a list answer, and of keys in one get/del: bounded frames whatever the cache holds. */
const PAGE_MAX = 1_000;
const KEYS_PER_REQUEST_MAX = 10_000;

const CONDITIONS: Record<number, Condition> = {
  [KvCondition.NONE]: 'always',
  [KvCondition.IF_ABSENT]: 'if_absent',
  [KvCondition.IF_PRESENT]: 'if_present',
};

/** The cache requests of the client protocol (put/get/del/list). */
export function handleKv(node: GrapevineNode, env: Envelope, conn: FramedConnection): void {
  const kv = node.kv;
  const fail = (err: unknown) => {
    const e = err as Error;
    conn.reply(env, { body: { case: 'error', value: { code: err instanceof KvError ? err.code : 'internal', message: e.message } } });
  };
  switch (env.body.case) {
    case 'kvPutRequest': {
      const { key, value, ttlMs, condition } = env.body.value;
      const ms = Number(ttlMs);
      kv.put(key, value, { ttlMs: ms, condition: CONDITIONS[condition] ?? 'always' }).then(
        (written) => conn.reply(env, { body: { case: 'kvPutResponse', value: { written } } }),
        fail,
      );
      return;
    }
    case 'kvGetRequest': {
      const keys = env.body.value.keys;
      if (keys.length > KEYS_PER_REQUEST_MAX) return fail(new KvError('too_large', `${keys.length} keys in one get; the limit is ${KEYS_PER_REQUEST_MAX}`));
      try {
        for (const k of keys) kv.checkKey(k);
      } catch (err) {
        return fail(err);
      }
      // `local`: another node asks this one as an owner; answering from here never loops.
      const read = env.body.value.local ? Promise.resolve(keys.map((k) => kv.getLocal(k))) : kv.getMany(keys);
      read.then(
        (values) => conn.reply(env, { body: { case: 'kvGetResponse', value: { values: values.map((v) => (v ? { found: true, value: v } : { found: false })) } } }),
        fail,
      );
      return;
    }
    case 'kvDelRequest': {
      const keys = env.body.value.keys;
      if (keys.length > KEYS_PER_REQUEST_MAX) return fail(new KvError('too_large', `${keys.length} keys in one delete; the limit is ${KEYS_PER_REQUEST_MAX}`));
      kv.del(keys).then((deleted) => conn.reply(env, { body: { case: 'kvDelResponse', value: { deleted } } }), fail);
      return;
    }
    case 'kvListRequest': {
      const { after, limit, pattern } = env.body.value;
      const pageMax = Math.min(limit || PAGE_MAX, PAGE_MAX);
      kv.scan(after, pageMax, pattern ? Buffer.from(pattern, 'utf8') : undefined).then((page) => {
        const values = page.keys.map((k) => kv.getLocal(k));
        const pairs = page.keys.flatMap((key, i) => (values[i] ? [{ key, value: values[i] }] : []));
        conn.reply(env, { body: { case: 'kvListResponse', value: { pairs, more: page.more } } });
      }, fail);
      return;
    }
    default:
      return;
  }
}
