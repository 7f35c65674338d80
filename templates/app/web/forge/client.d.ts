// Types of Forge's client runtime (client.js), written by `forge generate ts`. Do not edit.

/** An invalid field of a call's arguments. */
export interface FieldError {
  /** The field's path, such as `user.email` or `items[2].qty`. */
  path: string;
  /** What is wrong with it. */
  message: string;
}

/** An RFC 7807 problem, as the server answers a failed call. */
export interface Problem {
  /** A URI naming the kind of problem (`urn:forge:problem:…`), or `about:blank`. */
  type: string;
  /** The status code's reason phrase. */
  title: string;
  /** The HTTP status code (0: the request never reached the server). */
  status: number;
  /** What went wrong, for a person to read. */
  detail: string;
  /** The request path, when known. */
  instance?: string;
  /** Invalid fields, with their paths. */
  errors?: FieldError[];
  /** Data the function attached to its error. */
  data?: unknown;
  /** The request's id, on server errors. */
  request_id?: string;
}

/** A failed call or subscription. */
export declare class ForgeError extends Error {
  constructor(problem: Problem);
  readonly problem: Problem;
  readonly status: number;
  readonly type: string;
}

/** Stops a subscription or a watch. */
export type Unsubscribe = () => void;

/** What kind of function. */
export type FunctionKind = 'query' | 'mutation' | 'action';

/** A function of the application: call it with its arguments; pass a query to `subscribe`. */
export interface FunctionRef<K extends FunctionKind, A, R> {
  (...args: null extends A ? [args?: A] : [args: A]): Promise<R>;
  readonly kind: K;
  /** Its name on the server (`/rpc/{name}`). */
  readonly functionName: string;
  /** The client it calls through. */
  readonly client: ForgeClient;
}

/** A watched job, as the server pushes it. */
export interface JobState {
  id: number;
  kind: string;
  queue: string;
  state: 'scheduled' | 'available' | 'running' | 'retryable' | 'completed' | 'discarded' | 'cancelled';
  /** The current (or last) attempt; 0 before the first. */
  attempt: number;
  max_attempts: number;
  /** The last progress the job reported. */
  progress: { percent?: number; message?: string } | null;
  /** The output of a completed job. */
  output: unknown;
  /** The last failed attempt's error message. */
  last_error: string | null;
  run_at: string;
  attempted_at: string | null;
  finalized_at: string | null;
  cancel_requested: boolean;
}

/** A workflow run's step, as `watchWorkflow` pushes it. */
export interface WorkflowStep {
  name: string;
  seq: number;
  kind: string;
  status: string;
  output: unknown;
  error: string | null;
  attempts: number;
  wake_at: string | null;
  started_at: string;
  finished_at: string | null;
  compensated_at: string | null;
  compensation_error: string | null;
}

/** A workflow run with its steps and events, as `watchWorkflow` pushes it. */
export interface WorkflowState {
  /** The run: `id`, `workflow`, `version`, `status`, `run_key`, `args`, `output`, times, what it waits for. */
  run: { id: number; workflow: string; status: string; [field: string]: unknown };
  steps: WorkflowStep[];
  events: { name: string; payload: unknown; sent_at: string }[];
}

/** Every queue's depth, as `watchQueues` pushes it. */
export interface QueuesState {
  queues: {
    name: string;
    /** Unfinished jobs by state (`available`, `scheduled`, `running`, `retryable`). */
    depth: Record<string, number>;
    /** Its concurrency on the node that answered, if that node works it. */
    concurrency: number | null;
    paused_at: string | null;
  }[];
}

/** How a client reaches the application. */
export interface ClientOptions {
  /** The application's base URL; by default the page's origin (or http://127.0.0.1:8080 outside a browser). */
  url?: string;
  /** A JWT or API key, or a function returning one (called for each request and each reconnect). */
  token?: string | null | (() => string | null | undefined | Promise<string | null | undefined>);
  /** `fetch`, for runtimes without a global one. */
  fetch?: typeof fetch;
  /** `WebSocket`, for runtimes without a global one. */
  WebSocket?: unknown;
}

/** One connection to a Forge application: calls over HTTP, subscriptions over one WebSocket that reconnects by itself. */
export declare class ForgeClient {
  constructor(options?: ClientOptions);
  /** Changes the URL or credentials (an open WebSocket reconnects with them). */
  configure(options: ClientOptions): this;
  /** A callable reference to a function (what `api` holds). */
  ref<K extends FunctionKind, A, R>(kind: K, name: string): FunctionRef<K, A, R>;
  /** Calls a function by name. */
  call<R = unknown>(name: string, args: unknown): Promise<R>;
  /** Runs a query now and whenever its result changes. */
  subscribe<A, R>(
    query: FunctionRef<'query', A, R>,
    args: A,
    onData: (data: R) => void,
    onError?: (error: ForgeError) => void,
  ): Unsubscribe;
  /** Follows a job's state and progress; resumes from the last version seen after a reconnect. */
  watchJob(id: number, onJob: (job: JobState) => void, onError?: (error: ForgeError) => void): Unsubscribe;
  /** Follows a workflow run's steps and events (operators: the `[dashboard] role`). */
  watchWorkflow(id: number, onRun: (run: WorkflowState) => void, onError?: (error: ForgeError) => void): Unsubscribe;
  /** Follows every queue's depth and pause (operators: the `[dashboard] role`). */
  watchQueues(onQueues: (queues: QueuesState) => void, onError?: (error: ForgeError) => void): Unsubscribe;
  /** Called with `true` when the WebSocket opens and `false` when it drops. */
  onConnectionChange(listener: (open: boolean) => void): Unsubscribe;
  /** Closes the WebSocket and forgets every subscription. */
  close(): void;
}
