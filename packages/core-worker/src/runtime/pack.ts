/**
 * Packs small byte arrays of one thread message into one buffer (see messages.ts): the sender
 * adds each array and keeps its offset, the receiver reads views [at, at + len).
 */
export class Packer {
  private parts: Uint8Array[] = [];
  private size = 0;

  /** Adds bytes; returns their offset in the packed buffer. */
  add(bytes: Uint8Array): number {
    const at = this.size;
    this.parts.push(bytes);
    this.size += bytes.byteLength;
    return at;
  }

  /** The packed buffer (its ArrayBuffer is for transfer), or null when nothing was added; resets. */
  finish(): Uint8Array | null {
    if (this.parts.length === 0) return null;
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    this.parts = [];
    this.size = 0;
    return out;
  }
}
