import type { Principal } from './auth.ts';
import type { Env, FarmConfig } from './env.ts';

/** Hono's environment for every route: bindings plus per-request values set by middleware. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    config: FarmConfig;
    /** Tells nodes waiting in a long poll that new work may be there. */
    wake: () => void;
    /** Who sent the request, as the auth middleware established it (see edge/auth.ts). */
    principal: Principal;
    /** Set by `actAsWorker` once a node route checked the worker id it acts for. */
    actingWorkerId: string | undefined;
    /**
     * Set by the busiest node routes when they know no job finished in this request, so the
     * webhook sweep after it is skipped (see edge/webhooks.ts).
     */
    noJobFinished: boolean | undefined;
  };
}
