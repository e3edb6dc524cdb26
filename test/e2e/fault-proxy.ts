/**
 * A TCP proxy for fault-injection tests: render nodes talk to the master through it, and it
 * resets connections, stalls them and adds latency, chosen by a seeded random generator so a
 * failing run can be replayed with the same seed (the order in which connections arrive still
 * varies with timing, so a replay has the same faults, not necessarily on the same requests).
 *
 * Bounded on purpose: it listens on 127.0.0.1 only, forwards only to a loopback port, and stops
 * injecting after `maxFaults` faults or `activeMs`, whichever comes first; after that it is a
 * plain pipe until `close()`, which ends every connection it holds. It closes itself after
 * `lifetimeMs` in any case, so a test that never gets to close it leaves nothing listening.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

export interface FaultPlan {
  /** Seed of the random generator that picks every fault. */
  seed: number;
  /** Chance that a new connection is reset after a random number of bytes (0..1). */
  resetChance: number;
  /** Chance that a new connection stalls once, in one direction, for up to `maxStallMs`. */
  stallChance: number;
  maxStallMs: number;
  /** Chance that a new connection delays every chunk by up to `maxLatencyMs`. */
  latencyChance: number;
  maxLatencyMs: number;
  /** Injecting stops after this many faults (resets + stalls + slow connections). */
  maxFaults: number;
  /** ... or this long after the proxy started, whichever comes first. */
  activeMs: number;
  /** The proxy closes itself this long after it started (default 10 minutes). */
  lifetimeMs?: number;
}

export interface FaultStats {
  connections: number;
  resets: number;
  stalls: number;
  slowConnections: number;
  /** Connections refused because the master was not listening (it was restarting). */
  upstreamRefused: number;
}

/** mulberry32: a small, good-enough PRNG whose whole state is one 32-bit number. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What one connection will suffer, decided when it opens. */
interface ConnectionFaults {
  /** Reset both sides once this many bytes went through (either direction); null: never. */
  resetAfterBytes: number | null;
  /** Stall one direction once this many bytes went through it. */
  stall: { direction: 'up' | 'down'; afterBytes: number; ms: number } | null;
  /** Extra delay before forwarding each chunk. */
  latencyMs: number;
}

export class FaultProxy {
  readonly url: string;
  readonly port: number;
  readonly stats: FaultStats = { connections: 0, resets: 0, stalls: 0, slowConnections: 0, upstreamRefused: 0 };
  private readonly server: Server;
  private readonly plan: FaultPlan;
  private readonly random: () => number;
  private readonly startedAt = Date.now();
  private readonly sockets = new Set<Socket>();
  private injecting = true;
  private closed = false;

  private constructor(server: Server, port: number, plan: FaultPlan) {
    this.server = server;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.plan = plan;
    this.random = seededRandom(plan.seed);
  }

  /** Listens on 127.0.0.1:`listenPort` (0: any free port) and forwards to 127.0.0.1:`targetPort`. */
  static async start(targetPort: number, plan: FaultPlan, listenPort = 0): Promise<FaultProxy> {
    if (!Number.isInteger(targetPort) || targetPort <= 0 || targetPort > 65535) throw new Error(`bad target port ${targetPort}`);
    let proxy: FaultProxy | undefined;
    const server = createServer((client) => proxy!.accept(client, targetPort));
    server.listen(listenPort, '127.0.0.1');
    await once(server, 'listening');
    proxy = new FaultProxy(server, (server.address() as { port: number }).port, plan);
    const selfClose = setTimeout(() => void proxy!.close(), plan.lifetimeMs ?? 10 * 60_000);
    selfClose.unref();
    server.once('close', () => clearTimeout(selfClose));
    return proxy;
  }

  /** Whether faults are still being injected (the budget is not spent and time is not up). */
  get active(): boolean {
    if (!this.injecting) return false;
    const { resets, stalls, slowConnections } = this.stats;
    if (resets + stalls + slowConnections >= this.plan.maxFaults || Date.now() - this.startedAt >= this.plan.activeMs) {
      this.injecting = false;
    }
    return this.injecting;
  }

  /** Stops injecting faults; connections already open keep the faults they were given. */
  stopInjecting(): void {
    this.injecting = false;
  }

  /** Stops listening and ends every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.injecting = false;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private decide(): ConnectionFaults {
    const faults: ConnectionFaults = { resetAfterBytes: null, stall: null, latencyMs: 0 };
    // Draw every number whether or not it is used, so one seed gives one sequence of decisions.
    const [resetRoll, resetAt, stallRoll, stallDir, stallAt, stallMs, slowRoll, slowMs] = Array.from({ length: 8 }, this.random);
    if (!this.active) return faults;
    // Which kind a faulted connection gets: the rolls decide, except that the first faults cover
    // every kind once, so a run with few connections still meets each of them.
    const { resets, stalls, slowConnections } = this.stats;
    const faulted = resetRoll! < this.plan.resetChance || stallRoll! < this.plan.stallChance || slowRoll! < this.plan.latencyChance;
    let kind: 'reset' | 'stall' | 'slow' | null = null;
    if (faulted && resets === 0) kind = 'reset';
    else if (faulted && stalls === 0) kind = 'stall';
    else if (faulted && slowConnections === 0) kind = 'slow';
    else if (resetRoll! < this.plan.resetChance) kind = 'reset';
    else if (stallRoll! < this.plan.stallChance) kind = 'stall';
    else if (slowRoll! < this.plan.latencyChance) kind = 'slow';
    if (kind === 'reset') {
      // Anywhere from before the request line to deep inside an upload or a response.
      faults.resetAfterBytes = Math.floor(resetAt! * 6_000);
      this.stats.resets++;
    } else if (kind === 'stall') {
      faults.stall = {
        direction: stallDir! < 0.5 ? 'up' : 'down',
        afterBytes: Math.floor(stallAt! * 2_000),
        ms: 200 + Math.floor(stallMs! * (this.plan.maxStallMs - 200)),
      };
      this.stats.stalls++;
    } else if (kind === 'slow') {
      faults.latencyMs = 5 + Math.floor(slowMs! * this.plan.maxLatencyMs);
      this.stats.slowConnections++;
    }
    return faults;
  }

  private accept(client: Socket, targetPort: number): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    this.stats.connections++;
    const faults = this.decide();
    const upstream = connect(targetPort, '127.0.0.1');
    this.sockets.add(client);
    this.sockets.add(upstream);
    let bytes = 0;
    let done = false;
    const finish = (reset: boolean) => {
      if (done) return;
      done = true;
      for (const socket of [client, upstream]) {
        this.sockets.delete(socket);
        // resetAndDestroy sends a TCP RST: the peer sees ECONNRESET, as with a flaky network.
        if (reset && !socket.destroyed && socket.readyState !== 'opening') socket.resetAndDestroy();
        else socket.destroy();
      }
    };
    client.on('error', () => finish(true));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') this.stats.upstreamRefused++;
      finish(true);
    });
    client.on('close', () => finish(false));
    upstream.on('close', () => finish(false));

    const pump = async (from: Socket, to: Socket, direction: 'up' | 'down') => {
      let sent = 0;
      let stalled = false;
      for await (const chunk of from as AsyncIterable<Buffer>) {
        if (done) return;
        if (faults.stall && !stalled && faults.stall.direction === direction && sent + chunk.length > faults.stall.afterBytes) {
          stalled = true;
          await sleep(faults.stall.ms);
        }
        if (faults.latencyMs > 0) await sleep(faults.latencyMs);
        if (faults.resetAfterBytes !== null && bytes + chunk.length > faults.resetAfterBytes) {
          // Forward part of the chunk, then cut the connection in the middle of whatever it carried.
          const part = Math.max(0, faults.resetAfterBytes - bytes);
          if (part > 0 && !to.destroyed) to.write(chunk.subarray(0, part));
          finish(true);
          return;
        }
        if (done || to.destroyed) return;
        sent += chunk.length;
        bytes += chunk.length;
        if (!to.write(chunk)) await Promise.race([once(to, 'drain'), once(to, 'close')]);
      }
      if (!to.destroyed) to.end();
    };
    upstream.once('connect', () => {
      pump(client, upstream, 'up').catch(() => finish(true));
      pump(upstream, client, 'down').catch(() => finish(true));
    });
  }
}
