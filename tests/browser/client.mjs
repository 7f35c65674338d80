// Drives the client `forge generate ts` wrote for the `forge new` app against the running app
// (run by .ci/forge-new.sh with Node's --experimental-websocket on Node 20):
//   node --experimental-websocket client.mjs BASE_URL PATH/TO/web/forge/api.js TOKEN
// A live query's first result; a mutation through the client pushes the new list; a bad call
// rejects with the server's problem; a job watch follows the welcome job to `completed`; the
// queues' depths are watched.
import { pathToFileURL } from 'node:url';

const [base, apiPath, token] = process.argv.slice(2);
const { api, client, subscribe, watchJob } = await import(pathToFileURL(apiPath).href);
const { ForgeError } = await import(pathToFileURL(apiPath.replace(/api\.js$/, 'client.js')).href);
const { liveQuery } = await import(pathToFileURL(apiPath.replace(/api\.js$/, 'svelte.js')).href);
client.configure({ url: base, token });

const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));
const within = (ms, what, promise) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);

// Every result the subscription pushes, in order; `next(pred)` waits for one matching.
const results = [];
const waiters = [];
const stop = subscribe(api.query.recentSignups, null, (list) => {
  results.push(list);
  for (const w of waiters.splice(0)) w();
}, (e) => { console.error('subscription error', e.problem); process.exit(1); });
async function next(pred, what) {
  return within(15000, what, (async () => {
    for (;;) {
      const hit = results.find(pred);
      if (hit) return hit;
      await new Promise((resolve) => waiters.push(resolve));
    }
  })());
}

const first = await next(() => true, 'the first result');
step('first result', { rows: first.length });

const email = `node-${Date.now()}@example.com`;
const job = await api.mutation.signUp({ email });
if (typeof job !== 'number') throw new Error(`signUp answered ${JSON.stringify(job)}`);
await next((list) => list.some((row) => row.email === email), 'the pushed list with the new sign-up');
step('pushed after the mutation', { email });

try {
  await api.mutation.signUp({ email: 'not an email' });
  throw new Error('a bad email was accepted');
} catch (e) {
  if (!(e instanceof ForgeError) || e.status !== 422 || !e.problem.errors?.some((f) => f.path === 'email')) {
    throw new Error(`unexpected error: ${e} ${JSON.stringify(e.problem)}`);
  }
  step('bad call rejected', { type: e.type, errors: e.problem.errors });
}

const states = [];
await within(30000, `job ${job} completed`, new Promise((resolve, reject) => {
  const unwatch = watchJob(job, (state) => {
    states.push(state.state);
    if (state.state === 'completed') { unwatch(); resolve(); }
  }, (e) => reject(new Error(`watch refused: ${JSON.stringify(e.problem)}`)));
}));
step('job watched to completion', { job, states });
await next((list) => list.some((row) => row.email === email && row.welcomed), 'the list showing the welcome');
step('welcome pushed', { email });

const queues = await within(15000, 'the queues', new Promise((resolve, reject) => {
  const unwatch = client.watchQueues((q) => { unwatch(); resolve(q); }, (e) => reject(new Error(JSON.stringify(e.problem))));
}));
if (!queues.queues.some((q) => q.name === 'default')) throw new Error(`no default queue: ${JSON.stringify(queues)}`);
step('queues watched', { queues: queues.queues.map((q) => q.name) });

// The Svelte store, as a component's `$signups` would use it: loading, then the live list.
const seen = [];
const store = liveQuery(api.query.recentSignups, null);
const storeEmail = `store-${Date.now()}@example.com`;
await within(15000, 'the store to follow a sign-up', new Promise((resolve) => {
  let added = false;
  const unsubscribe = store.subscribe((value) => {
    seen.push(value.loading ? 'loading' : 'data');
    if (!value.loading && !added) { added = true; api.mutation.signUp({ email: storeEmail }); }
    if (value.data?.some((row) => row.email === storeEmail)) { unsubscribe(); resolve(); }
  });
}));
if (seen[0] !== 'loading') throw new Error(`the store did not start loading: ${seen}`);
step('svelte store', { values: seen.length });

stop();
client.close();
step('done');
