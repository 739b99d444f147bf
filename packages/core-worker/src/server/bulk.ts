/**
 * The bulk path for large values between workers: negotiated in GetData, carried over a plain
 * TCP connection. The sender writes the stored Buffer as is; the receiver reads straight into
 * the destination Buffer (socket `onread` with a buffer function), so the payload is never copied
 * or framed. gRPC with protobuf `bytes` copies each chunk several times and moves ~300 MB/s here;
 * raw TCP moves more than 1 GB/s.
 *
 * With TLS (the cluster's Security has TLS) the value travels encrypted and authenticated: each
 * offer gets a fresh one-time AES-256-GCM key, sent to the requester only inside the GetData
 * stream (mutual TLS, the server's certificate checked for the worker role), and the bulk
 * connection carries the value as 4 MiB frames, each ciphertext and its tag (see the proto's
 * `GetDataResponse.bulk_key`). Nothing can be read, changed, reordered or cut off unnoticed on the
 * way. Node's own TLS sockets (node:tls) cost ~2.5 CPU-seconds per GB for both ends together
 * here and moved 300-400 MB/s (16 KB records, one JavaScript event each); AES-GCM over large frames
 * costs ~1 CPU-second per GB on top of the plaintext path.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { CommClosedError } from '@skein/common';

/** Values at least this large go over the bulk path. */
export const BULK_MIN_BYTES = 1024 * 1024;
const TOKEN_BYTES = 32;
const OFFER_TTL_MS = 60_000;
/** A connection that has not sent its token within this long is closed (ms); the bulkIdleTimeoutMs worker option. */
export const DEFAULT_BULK_IDLE_TIMEOUT_MS = 5_000;
/** Plaintext bytes per encrypted frame. */
export const BULK_FRAME_BYTES = 4 * 1024 * 1024;
const TAG_BYTES = 16;
/**
 * Bytes per cipher call: each call allocates its output, and pieces this small are served from
 * the allocator's free lists, where 4 MiB ones would be fresh pages each time (half the cost).
 */
const PIECE_BYTES = 64 * 1024;
const KEY_BYTES = 32;
const CIPHER = 'aes-256-gcm';

interface Offer {
  data: Uint8Array;
  /** The frame key (encrypted bulk path), or undefined: raw bytes. */
  key: Buffer | undefined;
  timer: NodeJS.Timeout;
}

/** What a requester needs to read an offered value. */
export interface BulkTicket {
  token: string;
  /** Empty: the value comes as raw bytes; else the frames' AES-256-GCM key. */
  key: Buffer;
}

/** Bulk transfers this process served and fetched, and how many of them encrypted (tests, metrics). */
export const bulkCounters = { served: 0, servedEncrypted: 0, fetched: 0, fetchedEncrypted: 0 };

function nonce(frame: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(frame), 4);
  return iv;
}

function totalAad(total: number): Buffer {
  const aad = Buffer.alloc(8);
  aad.writeBigUInt64BE(BigInt(total));
  return aad;
}

export class BulkServer {
  private readonly offers = new Map<string, Offer>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    /** Offers are encrypted (the cluster has TLS). */
    readonly encrypted: boolean,
    private readonly idleTimeoutMs: number,
  ) {}

  /**
   * Listens on `host` (any free port). `encrypted`: every value is sent as AES-GCM frames;
   * `idleTimeoutMs`: how long a connection may take to send its token before it is closed.
   */
  static start(host: string, options: { encrypted?: boolean; idleTimeoutMs?: number } = {}): Promise<BulkServer> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        const bulk = new BulkServer(server, (server.address() as { port: number }).port, options.encrypted ?? false, options.idleTimeoutMs ?? DEFAULT_BULK_IDLE_TIMEOUT_MS);
        server.on('connection', (s) => bulk.serve(s));
        resolve(bulk);
      });
    });
  }

  /** Holds `data` for one reader; returns the token it must present (and the key, when encrypted). */
  offer(data: Uint8Array): BulkTicket {
    const token = randomBytes(TOKEN_BYTES / 2).toString('hex');
    const key = this.encrypted ? randomBytes(KEY_BYTES) : undefined;
    const timer = setTimeout(() => this.offers.delete(token), OFFER_TTL_MS);
    timer.unref();
    this.offers.set(token, { data, key, timer });
    return { token, key: key ?? Buffer.alloc(0) };
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
      bulkCounters.served++;
      if (offer.key) {
        bulkCounters.servedEncrypted++;
        void sendFrames(socket, offer.data, offer.key);
      } else {
        socket.end(offer.data);
      }
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

/**
 * Writes `data` as encrypted frames, in pieces as they are sealed: the kernel sends while the next
 * pieces are encrypted, and the reader opens them as they come (no stop-and-go per frame).
 */
async function sendFrames(socket: Socket, data: Uint8Array, key: Buffer): Promise<void> {
  const aad = totalAad(data.byteLength);
  for (let offset = 0, frame = 0; offset < data.byteLength; offset += BULK_FRAME_BYTES, frame++) {
    const cipher = createCipheriv(CIPHER, key, nonce(frame));
    cipher.setAAD(aad);
    const end = Math.min(data.byteLength, offset + BULK_FRAME_BYTES);
    for (let at = offset; at < end; at += PIECE_BYTES) {
      if (socket.destroyed) return;
      socket.write(cipher.update(data.subarray(at, Math.min(end, at + PIECE_BYTES))));
      // Up to a frame queued in this process; then let the event loop hand it to the kernel.
      if (socket.writableLength > BULK_FRAME_BYTES) await drained(socket);
    }
    cipher.final();
    socket.write(cipher.getAuthTag());
  }
  socket.end();
}

function drained(socket: Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    const go = () => {
      socket.off('drain', go);
      socket.off('close', go);
      resolve();
    };
    socket.on('drain', go);
    socket.on('close', go);
  });
}

/**
 * Reads `total` bytes offered under `token` by the bulk server at host:port into one Buffer.
 * With `key` (the offer's, non-empty) the value comes as encrypted frames: each is read whole into
 * a frame buffer, opened into place, and its tag checked; the Buffer is handed out only once every
 * frame's tag checked.
 */
export function fetchBulk(host: string, port: number, token: string, total: number, peer: string, key?: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Shared memory: the task threads that use this value read it in place, without a copy.
    const dest = Buffer.from(new SharedArrayBuffer(total));
    const scratch = Buffer.allocUnsafe(16);
    const encrypted = key !== undefined && key.byteLength > 0;
    let offset = 0;
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (err) reject(err);
      else {
        bulkCounters.fetched++;
        if (encrypted) bulkCounters.fetchedEncrypted++;
        resolve(dest);
      }
    };
    const tooMuch = () => done(new CommClosedError(peer, `Bulk transfer from ${peer} sent more than the announced ${total} bytes.`));
    const socket = connect({
      host,
      port,
      noDelay: true,
      onread: encrypted
        ? framesInto(dest, key, peer, (err) => (err ? done(err) : undefined), tooMuch, (n) => (offset = n))
        : {
            buffer: () => (offset < total ? dest.subarray(offset) : scratch),
            callback: (n: number) => {
              if (offset >= total) {
                tooMuch();
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

/**
 * The `onread` of an encrypted fetch: each frame (ciphertext, then its tag) is read into one
 * buffer and decrypted into `dest` as it arrives, a piece at a time (while it is in the cache, and
 * without holding the sender up at the end of each frame); the tag is checked when it has come.
 * `verified(n)` reports the bytes whose frames checked (the fetch is complete when n = dest.length).
 */
function framesInto(
  dest: Buffer,
  key: Uint8Array,
  peer: string,
  failed: (err: Error) => void,
  tooMuch: () => void,
  verified: (n: number) => void,
): { buffer: () => Uint8Array; callback: (n: number) => boolean } {
  const total = dest.byteLength;
  const aad = totalAad(total);
  const frameBuf = Buffer.allocUnsafe(Math.min(BULK_FRAME_BYTES, total) + TAG_BYTES);
  const scratch = Buffer.allocUnsafe(16);
  let frame = 0;
  let start = 0; // where the current frame's plaintext goes in dest
  let size = Math.min(BULK_FRAME_BYTES, total);
  let filled = 0; // bytes of the current frame (ciphertext, then tag) read
  let opened = 0; // ciphertext bytes of the current frame decrypted
  const begin = () => {
    const d = createDecipheriv(CIPHER, key, nonce(frame));
    d.setAAD(aad);
    return d;
  };
  let decipher = begin();
  const open = (upTo: number) => {
    while (opened < upTo) {
      const n = Math.min(PIECE_BYTES, upTo - opened);
      decipher.update(frameBuf.subarray(opened, opened + n)).copy(dest, start + opened);
      opened += n;
    }
  };
  return {
    buffer: () => (start >= total ? scratch : frameBuf.subarray(filled, size + TAG_BYTES)),
    callback: (n: number) => {
      if (start >= total) {
        tooMuch();
        return false;
      }
      filled += n;
      const ciphertext = Math.min(filled, size);
      // whole pieces as they come; the rest of the frame once it is all here
      open(ciphertext === size ? size : ciphertext - (ciphertext % PIECE_BYTES));
      if (filled < size + TAG_BYTES) return true;
      try {
        decipher.setAuthTag(frameBuf.subarray(size, size + TAG_BYTES));
        decipher.final();
      } catch (e) {
        failed(new CommClosedError(peer, `Bulk transfer from ${peer} failed its integrity check (frame ${frame}): the data was changed on the way or the key is wrong.`, { cause: e }));
        return false;
      }
      start += size;
      verified(start);
      frame++;
      size = Math.min(BULK_FRAME_BYTES, total - start);
      filled = 0;
      opened = 0;
      if (start < total) decipher = begin();
      return true;
    },
  };
}
