// Minimal GGUF v3 reader (metadata only) and writer, for generating test models.
// Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
import { closeSync, openSync, readSync, writeSync } from "node:fs";

export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue =
  | { type: Exclude<GgufType, GgufType.ARRAY>; value: GgufScalar }
  | { type: GgufType.ARRAY; itemType: Exclude<GgufType, GgufType.ARRAY>; value: GgufScalar[] };
export type GgufMetadata = Map<string, GgufValue>;

/** ggml tensor types this writer produces. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
}

const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const DEFAULT_ALIGNMENT = 32;

/** Reads the metadata key-values of a GGUF file (not its tensors). */
export function readGgufMetadata(path: string): GgufMetadata {
  const fd = openSync(path, "r");
  try {
    let position = 0;
    let buffer = Buffer.alloc(0);
    let offset = 0;
    const need = (n: number) => {
      if (offset + n <= buffer.length) return;
      const chunk = Buffer.alloc(Math.max(n, 1 << 20));
      const read = readSync(fd, chunk, 0, chunk.length, position);
      position += read;
      buffer = Buffer.concat([buffer.subarray(offset), chunk.subarray(0, read)]);
      offset = 0;
      if (buffer.length < n) throw new Error(`${path}: truncated GGUF file`);
    };
    const u32 = () => {
      need(4);
      const v = buffer.readUInt32LE(offset);
      offset += 4;
      return v;
    };
    const u64 = () => {
      need(8);
      const v = buffer.readBigUInt64LE(offset);
      offset += 8;
      return v;
    };
    const str = () => {
      const n = Number(u64());
      need(n);
      const v = buffer.toString("utf8", offset, offset + n);
      offset += n;
      return v;
    };
    const scalar = (type: GgufType): GgufScalar => {
      switch (type) {
        case GgufType.UINT8:
          need(1);
          return buffer.readUInt8(offset++);
        case GgufType.INT8:
          need(1);
          return buffer.readInt8(offset++);
        case GgufType.BOOL:
          need(1);
          return buffer.readUInt8(offset++) !== 0;
        case GgufType.UINT16: {
          need(2);
          const v = buffer.readUInt16LE(offset);
          offset += 2;
          return v;
        }
        case GgufType.INT16: {
          need(2);
          const v = buffer.readInt16LE(offset);
          offset += 2;
          return v;
        }
        case GgufType.UINT32:
          return u32();
        case GgufType.INT32: {
          need(4);
          const v = buffer.readInt32LE(offset);
          offset += 4;
          return v;
        }
        case GgufType.FLOAT32: {
          need(4);
          const v = buffer.readFloatLE(offset);
          offset += 4;
          return v;
        }
        case GgufType.UINT64:
          return u64();
        case GgufType.INT64: {
          need(8);
          const v = buffer.readBigInt64LE(offset);
          offset += 8;
          return v;
        }
        case GgufType.FLOAT64: {
          need(8);
          const v = buffer.readDoubleLE(offset);
          offset += 8;
          return v;
        }
        case GgufType.STRING:
          return str();
        default:
          throw new Error(`${path}: unknown GGUF value type ${type}`);
      }
    };

    if (u32() !== GGUF_MAGIC) throw new Error(`${path} is not a GGUF file`);
    const version = u32();
    if (version < 2) throw new Error(`${path}: GGUF version ${version} is not supported`);
    u64(); // tensor count
    const nKv = Number(u64());
    const metadata: GgufMetadata = new Map();
    for (let i = 0; i < nKv; i++) {
      const key = str();
      const type = u32() as GgufType;
      if (type === GgufType.ARRAY) {
        const itemType = u32() as Exclude<GgufType, GgufType.ARRAY>;
        const n = Number(u64());
        const value: GgufScalar[] = new Array(n);
        for (let j = 0; j < n; j++) value[j] = scalar(itemType);
        metadata.set(key, { type, itemType, value });
      } else {
        metadata.set(key, { type, value: scalar(type) } as GgufValue);
      }
    }
    return metadata;
  } finally {
    closeSync(fd);
  }
}

export interface GgufTensor {
  name: string;
  /** ggml order: ne[0] is the contiguous dimension */
  shape: number[];
  type: GgmlType;
  /** Fills the tensor's data in order; called once, while writing. */
  fill: (out: Float32Array) => void;
}

class ByteSink {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer) {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number | bigint) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  str(s: string) {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  pad(alignment: number) {
    const r = this.length % alignment;
    if (r) this.push(Buffer.alloc(alignment - r));
  }
  take(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function writeScalar(sink: ByteSink, type: GgufType, v: GgufScalar) {
  const b8 = Buffer.alloc(8);
  switch (type) {
    case GgufType.UINT8:
      sink.push(Buffer.from([Number(v)]));
      break;
    case GgufType.INT8:
      b8.writeInt8(Number(v));
      sink.push(b8.subarray(0, 1));
      break;
    case GgufType.BOOL:
      sink.push(Buffer.from([v ? 1 : 0]));
      break;
    case GgufType.UINT16:
      b8.writeUInt16LE(Number(v));
      sink.push(b8.subarray(0, 2));
      break;
    case GgufType.INT16:
      b8.writeInt16LE(Number(v));
      sink.push(b8.subarray(0, 2));
      break;
    case GgufType.UINT32:
      sink.u32(Number(v));
      break;
    case GgufType.INT32:
      b8.writeInt32LE(Number(v));
      sink.push(b8.subarray(0, 4));
      break;
    case GgufType.FLOAT32:
      b8.writeFloatLE(Number(v));
      sink.push(b8.subarray(0, 4));
      break;
    case GgufType.UINT64:
      sink.u64(BigInt(v as number | bigint));
      break;
    case GgufType.INT64:
      b8.writeBigInt64LE(BigInt(v as number | bigint));
      sink.push(b8);
      break;
    case GgufType.FLOAT64:
      b8.writeDoubleLE(Number(v));
      sink.push(b8);
      break;
    case GgufType.STRING:
      sink.str(String(v));
      break;
    default:
      throw new Error(`cannot write GGUF value type ${type}`);
  }
}

function float32ToFloat16Bits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i]!;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    let exp = ((x >>> 23) & 0xff) - 127 + 15;
    let mant = x & 0x7fffff;
    if (exp <= 0) {
      out[i] = sign;
      continue;
    } // flush tiny values to zero
    if (exp >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    // round to nearest even
    const rounded = mant + 0xfff + ((mant >>> 13) & 1);
    if (rounded & 0x800000) {
      mant = 0;
      exp += 1;
      if (exp >= 31) {
        out[i] = sign | 0x7c00;
        continue;
      }
    } else mant = rounded;
    out[i] = sign | (exp << 10) | (mant >>> 13);
  }
  return out;
}

/** Writes a GGUF v3 file with the given metadata and tensors. */
export function writeGguf(path: string, metadata: GgufMetadata, tensors: GgufTensor[]): void {
  const alignment = DEFAULT_ALIGNMENT;
  const header = new ByteSink();
  header.u32(GGUF_MAGIC);
  header.u32(3);
  header.u64(tensors.length);
  header.u64(metadata.size);
  for (const [key, entry] of metadata) {
    header.str(key);
    header.u32(entry.type);
    if (entry.type === GgufType.ARRAY) {
      header.u32(entry.itemType);
      header.u64(entry.value.length);
      for (const v of entry.value) writeScalar(header, entry.itemType, v);
    } else {
      writeScalar(header, entry.type, entry.value);
    }
  }
  let dataOffset = 0;
  const sizes = tensors.map((t) => t.shape.reduce((a, b) => a * b, 1) * (t.type === GgmlType.F32 ? 4 : 2));
  tensors.forEach((t, i) => {
    header.str(t.name);
    header.u32(t.shape.length);
    for (const d of t.shape) header.u64(d);
    header.u32(t.type);
    header.u64(dataOffset);
    dataOffset += Math.ceil(sizes[i]! / alignment) * alignment;
  });
  header.pad(alignment);

  const fd = openSync(path, "w");
  try {
    writeSync(fd, header.take());
    tensors.forEach((t, i) => {
      const values = new Float32Array(sizes[i]! / (t.type === GgmlType.F32 ? 4 : 2));
      t.fill(values);
      const data = t.type === GgmlType.F32 ? values : float32ToFloat16Bits(values);
      writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      const padding = Math.ceil(sizes[i]! / alignment) * alignment - sizes[i]!;
      if (padding) writeSync(fd, Buffer.alloc(padding));
    });
  } finally {
    closeSync(fd);
  }
}
