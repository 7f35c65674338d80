// Type-checked with `tsc --noEmit --strict` against the client `forge generate ts` wrote for the
// `forge new` app (.ci/forge-new.sh copies it beside web/forge/): the right calls compile, and
// each line marked @ts-expect-error must be refused (tsc fails if it is accepted).
import { api, client, subscribe, watchJob } from './forge/api.js';
import type { RecentSignup, SignUp } from './forge/api.js';
import { ForgeError, type JobState, type Problem } from './forge/client.js';
import { liveJob, liveQuery } from './forge/svelte.js';

export async function typed(): Promise<void> {
  const args: SignUp = { email: 'ada@example.com' };
  const job: number = await api.mutation.signUp(args);
  const rows: RecentSignup[] = await api.query.recentSignups(null);
  const again: RecentSignup[] = await api.query.recentSignups();
  const count: number = await api.query.signupCount(null);
  const emails: string[] = rows.concat(again).map((row) => row.email.toUpperCase());
  const stop = subscribe(api.query.recentSignups, null, (list: RecentSignup[]) => list.filter((r) => r.welcomed));
  stop();
  const unwatch = watchJob(job, (state: JobState) => state.progress?.percent ?? state.attempt, (e: ForgeError) => e.status);
  unwatch();
  liveQuery(api.query.recentSignups, null).subscribe((value) => value.data?.[0]?.welcome_failed);
  liveJob(client, job).subscribe((value) => value.job?.state === 'completed');
  client.configure({ url: 'http://127.0.0.1:8080', token: () => 'a token' });
  client.watchWorkflow(job, (run) => run.steps.map((step) => step.status).concat(run.run.status))();
  client.watchQueues((q) => q.queues.map((queue) => (queue.depth.available ?? 0) + queue.name.length))();
  try {
    await api.mutation.signUp({ email: 'x' });
  } catch (e) {
    if (e instanceof ForgeError) {
      const problem: Problem = e.problem;
      const fields: string[] = (problem.errors ?? []).map((f) => `${f.path}: ${f.message}`);
      console.log(problem.status, problem.type, fields, count, emails);
    }
  }

  // @ts-expect-error: email is a string
  await api.mutation.signUp({ email: 7 });
  // @ts-expect-error: sign_up needs its arguments
  await api.mutation.signUp();
  // @ts-expect-error: the list is RecentSignup[], not a number
  const wrong: number = await api.query.recentSignups(null);
  // @ts-expect-error: only queries can be subscribed
  subscribe(api.mutation.signUp, args, () => {});
  // @ts-expect-error: there is no such function
  api.query.listEverything(null);
  // @ts-expect-error: the callback gets the query's result type
  subscribe(api.query.signupCount, null, (list: RecentSignup[]) => list);
  // @ts-expect-error: a queue's depth is a map of numbers
  client.watchQueues((q) => q.queues[0].depth.available.toUpperCase());
  console.log(wrong);
}
