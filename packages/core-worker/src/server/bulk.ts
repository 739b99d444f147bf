/**
 * The bulk path for large values between workers: negotiated in GetData, carried over a plain
 * TCP connection. The sender writes the stored Buffer as is; the receiver reads straight into
 * the destination Buffer (socket `onread` with a buffer function), so the payload is never copied
 * or framed. gRPC with protobuf `bytes` copies each chunk several times and moves ~300 MB/s here;
 * raw TCP moves more than 1 GB/s.
 */
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { CommClosedError } from '@skein/common';

/** Values at least this large go over the bulk path. */
export const BULK_MIN_BYTES = 1024 * 1024;
const TOKEN_BYTES = 32;
const OFFER_TTL_MS = 60_000;
/** A connection that has not sent its token within this long is closed (ms); the bulkIdleTimeoutMs worker option. */
export const DEFAULT_BULK_IDLE_TIMEOUT_MS = 5_000;

interface Offer {
  data: Uint8Array;
  timer: NodeJS.Timeout;
}

export class BulkServer {
  private readonly offers = new Map<string, Offer>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly idleTimeoutMs: number,
  ) {}

  /** `idleTimeoutMs`: how long a connection may take to send its token before it is closed. */
  static start(host: string, idleTimeoutMs = DEFAULT_BULK_IDLE_TIMEOUT_MS): Promise<BulkServer> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        const bulk = new BulkServer(server, (server.address() as { port: number }).port, idleTimeoutMs);
        server.on('connection', (s) => bulk.serve(s));
        resolve(bulk);
      });
    });
  }

  /** Holds `data` for one reader; returns the token it must present. */
  offer(data: Uint8Array): string {
    const token = randomBytes(TOKEN_BYTES / 2).toString('hex');
    const timer = setTimeout(() => this.offers.delete(token), OFFER_TTL_MS);
    timer.unref();
    this.offers.set(token, { data, timer });
    return token;
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    // Until the token is in, a connection holds nothing: one that stays silent is closed.
    const idle = setTimeout(() => socket.destroy(), this.idleTimeoutMs);
    idle.unref();
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < TOKEN_BYTES) return;
      clearTimeout(idle);
      socket.off('data', onData);
      const token = head.subarray(0, TOKEN_BYTES).toString('ascii');
      const offer = this.offers.get(token);
      if (!offer) {
        socket.destroy();
        return;
      }
      this.offers.delete(token);
      clearTimeout(offer.timer);
      socket.end(offer.data);
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(idle);
      this.sockets.delete(socket);
    });
  }

  close(): Promise<void> {
    for (const o of this.offers.values()) clearTimeout(o.timer);
    this.offers.clear();
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Reads `total` bytes offered under `token` by the bulk server at host:port into one Buffer. */
export function fetchBulk(host: string, port: number, token: string, total: number, peer: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Shared memory: the task threads that use this value read it in place, without a copy.
    const dest = Buffer.from(new SharedArrayBuffer(total));
    const scratch = Buffer.allocUnsafe(16);
    let offset = 0;
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (err) reject(err);
      else resolve(dest);
    };
    const socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: () => (offset < total ? dest.subarray(offset) : scratch),
        callback: (n: number) => {
          if (offset >= total) {
            done(new CommClosedError(peer, `Bulk transfer from ${peer} sent more than the announced ${total} bytes.`));
            return false;
          }
          offset += n;
          return true;
        },
      },
    });
    socket.once('connect', () => socket.write(token, 'ascii'));
    socket.once('error', (err) => done(new CommClosedError(peer, `Bulk transfer from ${peer} failed: ${err.message}`, { cause: err })));
    socket.once('close', () => {
      if (offset === total) done();
      else done(new CommClosedError(peer, `Bulk transfer from ${peer} was cut short (${offset} of ${total} bytes).`));
    });
  });
}
