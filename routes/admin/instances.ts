/**
 * Instance routes of the admin door: register/replace (PUT), merge patch (PATCH, RFC 7396),
 * read, list, delete. Secret params in a document go to the vault, after the store write.
 */
import type Router from '@koa/router';
import jsonMergePatch from 'json-merge-patch';
import type { Services } from '../../daemon/services.js';
import { incarnationOf, inputOf } from '../../daemon/registry/model.js';
import { validateInstance, validateParamsPatch } from '../../daemon/registry/validate.js';
import { invalid } from '../../daemon/errors.js';
import { readJson } from './body.js';
import { summaryOf, viewOf } from './views.js';
import { EV } from '../../daemon/log/events.js';
import { pathParam } from './path.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function instanceRoutes(router: Router, s: Services): void {
  const limit = s.config.admin.maxBodyBytes;

  router.get('/instances', (ctx) => {
    ctx.body = { instances: s.store.list().map(summaryOf) };
  });

  router.get('/instances/:name', (ctx) => {
    ctx.body = viewOf(s, s.store.mustGet(pathParam(ctx, 'name')));
  });

  router.put('/instances/:name', async (ctx) => {
    const name = pathParam(ctx, 'name');
    const input = validateInstance(await readJson(ctx, limit));
    if (input.name !== name)
      throw invalid('name in the body differs from the path', [{ path: '/name', message: 'must equal the name in the path' }]);
    const secret = input.params?.secret;
    const { created, instance } = await s.store.put(input, true, () => {
      if (secret) s.vault.replace(name, secret);
    });
    s.log.info({ instance: name, created, generation: instance.generation }, created ? EV.instanceRegistered : EV.instanceReplaced);
    ctx.status = created ? 201 : 200;
    ctx.body = viewOf(s, instance);
  });

  router.patch('/instances/:name', async (ctx) => {
    const name = pathParam(ctx, 'name');
    s.store.mustGet(name);
    const patch = await readJson(ctx, limit);
    if (!isObject(patch)) throw invalid('a merge patch for an instance must be a JSON object');
    // Secrets are not part of the stored document: split them off and merge them into the vault.
    let secretPatch: Record<string, string | null> | null | undefined;
    if (isObject(patch.params) && 'secret' in patch.params) {
      const sp = patch.params.secret;
      secretPatch = sp === null ? null : validateParamsPatch({ values: sp }).values;
      delete patch.params.secret;
    }
    // Applied inside the instance's write queue: concurrent patches never lose each other.
    const { instance } = await s.store.update(
      name,
      (prev) => {
        const input = validateInstance(jsonMergePatch.apply(inputOf(prev), structuredClone(patch)));
        if (input.name !== name)
          throw invalid('a patch cannot rename an instance', [{ path: '/name', message: 'must equal the name in the path' }]);
        return input;
      },
      () => {
        if (secretPatch === null) s.vault.wipe(name);
        else if (secretPatch) s.vault.merge(name, secretPatch);
      },
    );
    s.log.info({ instance: name, generation: instance.generation }, EV.instancePatched);
    ctx.body = viewOf(s, instance);
  });

  router.delete('/instances/:name', async (ctx) => {
    const name = pathParam(ctx, 'name');
    const secrets = s.vault.info(name).length;
    const prev = s.store.mustGet(name);
    await s.store.remove(name); // the 'removed' event wipes its secrets, drops its pipe, aborts its install job
    // Answer once its install appliance (if any) is destroyed and the job's record is gone.
    await s.jobs.forget(name, incarnationOf(prev));
    s.log.info({ instance: name, secretsWiped: secrets }, EV.instanceRemoved);
    ctx.status = 204;
  });
}
