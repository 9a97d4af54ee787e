/**
 * mulberry32: a small seeded PRNG returning floats in [0, 1). Fuzz tests use it so the same seed
 * replays the same hostile bytes.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `length` bytes from seededRandom(seed), four per draw: the same seed gives the same bytes, so a transfer that
 * comes back different is reproducible. Fast enough for tens of MB (about 0.1 s for 50 MB).
 */
export function seededBytes(length: number, seed = 1): Buffer {
  const next = seededRandom(seed);
  const words = new Uint32Array(Math.ceil(length / 4));
  for (let i = 0; i < words.length; i++) words[i] = next() * 0x1_0000_0000;
  return Buffer.from(words.buffer, 0, length);
}
