import { closeSync, fstatSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { halfToFloat } from '../model/float16.js';

/**
 * safetensors (https://github.com/huggingface/safetensors) read and write, for checkpoints and for
 * loading Hugging Face weights.
 *
 * Layout: u64 little-endian N | N bytes of UTF-8 JSON header | data section. The header maps each
 * tensor name to {dtype, shape, data_offsets: [begin, end]} (byte offsets into the data section)
 * and may hold "__metadata__": {string: string}. Data is raw little-endian, row-major.
 *
 * Written here rather than taken from npm: as of this writing the registry's `safetensors` package
 * is an empty 0.0.1 placeholder, and the maintained JS code (@huggingface/hub) only parses headers
 * of remote files. The format is small; what matters is matching the reference implementation's
 * checks, which this does: header padded with spaces to a multiple of 8, tensors laid out without
 * gaps or overlaps and covering the data section exactly, byte size = elements × dtype size.
 */

export type SafetensorsDtype = 'F32' | 'F64' | 'I64' | 'I32' | 'F16' | 'BF16';

export interface NamedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** F16 and BF16 are carried as their raw 16-bit patterns; see toFloat32. */
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint16Array;
}

export interface SafetensorsHeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

interface DtypeInfo {
  bytes: number;
  array: Float32ArrayConstructor | Float64ArrayConstructor | BigInt64ArrayConstructor | Int32ArrayConstructor | Uint16ArrayConstructor;
}

const DTYPES: Record<SafetensorsDtype, DtypeInfo> = {
  F64: { bytes: 8, array: Float64Array },
  I64: { bytes: 8, array: BigInt64Array },
  F32: { bytes: 4, array: Float32Array },
  I32: { bytes: 4, array: Int32Array },
  F16: { bytes: 2, array: Uint16Array },
  BF16: { bytes: 2, array: Uint16Array },
};

/** Same cap as the reference implementation: a larger header is a corrupt or hostile file. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

if (endianness() !== 'LE') {
  // Typed arrays use host byte order; the format is little-endian.
  throw new Error('safetensors.ts assumes a little-endian host');
}

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(DTYPES, value);
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Serialises tensors into one buffer (header, then data ordered by alignment and name). */
export function serializeSafetensors(tensors: Record<string, NamedTensor>, metadata?: Record<string, string>): Buffer {
  const names = Object.keys(tensors);
  for (const name of names) {
    if (name === METADATA_KEY || name.length === 0) throw new Error(`invalid tensor name ${JSON.stringify(name)}`);
    const t = tensors[name];
    if (!isDtype(t.dtype)) throw new Error(`tensor ${name}: unsupported dtype ${String(t.dtype)}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`tensor ${name}: shape ${JSON.stringify(t.shape)} must hold non-negative integers`);
    }
    const info = DTYPES[t.dtype];
    if (!(t.data instanceof info.array)) {
      throw new Error(`tensor ${name}: dtype ${t.dtype} needs a ${info.array.name}, got ${t.data.constructor.name}`);
    }
    if (t.data.length !== elementCount(t.shape)) {
      throw new Error(`tensor ${name}: shape ${JSON.stringify(t.shape)} has ${elementCount(t.shape)} elements, data has ${t.data.length}`);
    }
  }
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new Error(`metadata ${key}: values must be strings`);
    }
  }

  // Widest elements first (then by name, as the reference writer does), so each tensor starts at
  // a multiple of its element size and a reader can view it in place.
  names.sort((a, b) => DTYPES[tensors[b].dtype].bytes - DTYPES[tensors[a].dtype].bytes || (a < b ? -1 : a > b ? 1 : 0));

  const header: Record<string, SafetensorsHeaderEntry | Record<string, string>> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) header[METADATA_KEY] = metadata;
  let offset = 0;
  for (const name of names) {
    const { dtype, shape, data } = tensors[name];
    header[name] = { dtype, shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + headerLength + offset, 0x20); // padding bytes are spaces
  out.writeBigUInt64LE(BigInt(headerLength), 0);
  json.copy(out, 8);
  let at = 8 + headerLength;
  for (const name of names) {
    const { data } = tensors[name];
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    at += data.byteLength;
  }
  return out;
}

/** Writes a .safetensors file; the file appears complete or not at all (temp file + rename). */
export function writeSafetensors(path: string, tensors: Record<string, NamedTensor>, metadata?: Record<string, string>): void {
  const bytes = serializeSafetensors(tensors, metadata);
  const temp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(temp, bytes);
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/** Parses and validates the header; returns it with where the data section starts. */
function parseHeader(prefix: Uint8Array, fileBytes: number, source: string): {
  entries: Map<string, SafetensorsHeaderEntry & { dtype: SafetensorsDtype }>;
  metadata: Record<string, string>;
  dataStart: number;
} {
  const fail = (why: string): never => {
    throw new Error(`${source}: not a valid safetensors file: ${why}`);
  };
  if (fileBytes < 8) fail(`${fileBytes} bytes, too short for the 8-byte header length`);
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const declared = view.getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) fail(`header length ${declared} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLength = Number(declared);
  if (8 + headerLength > fileBytes) fail(`header length ${headerLength} runs past the end of the ${fileBytes}-byte file`);
  if (prefix.length < 8 + headerLength) fail('internal: header bytes not read');

  let parsed: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + headerLength));
    if (!text.startsWith('{')) fail('header does not start with "{"');
    parsed = JSON.parse(text);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith(source)) throw error;
    fail(`header is not UTF-8 JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail('header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataBytes = fileBytes - dataStart;

  const entries = new Map<string, SafetensorsHeaderEntry & { dtype: SafetensorsDtype }>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const entry = raw as Partial<Record<keyof SafetensorsHeaderEntry, unknown>> | null;
    if (typeof entry !== 'object' || entry === null) fail(`tensor ${name}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isDtype(dtype)) fail(`tensor ${name}: unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPES).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) fail(`tensor ${name}: data_offsets [${begin}, ${end}] run backwards`);
    if (end > dataBytes) fail(`tensor ${name}: data_offsets [${begin}, ${end}] run past the ${dataBytes}-byte data section`);
    const expected = elementCount(shape as number[]) * DTYPES[dtype as SafetensorsDtype].bytes;
    if (end - begin !== expected) {
      fail(`tensor ${name}: ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes, data_offsets give ${end - begin}`);
    }
    entries.set(name, { dtype: dtype as SafetensorsDtype, shape: shape as number[], data_offsets: [begin, end] });
  }

  // Tensors must tile the data section exactly: no gaps, no overlaps, nothing left over.
  const spans = [...entries].sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0] || x[1].data_offsets[1] - y[1].data_offsets[1]);
  let cursor = 0;
  for (const [name, { data_offsets: [begin, end] }] of spans) {
    if (begin !== cursor) {
      fail(`tensor ${name}: starts at byte ${begin} of the data section, expected ${cursor} (${begin > cursor ? 'gap' : 'overlap'})`);
    }
    cursor = end;
  }
  if (cursor !== dataBytes) fail(`tensors cover ${cursor} bytes but the data section holds ${dataBytes}`);
  return { entries, metadata, dataStart };
}

/** Parses a whole safetensors file held in memory. Every tensor gets its own copy of its bytes. */
export function parseSafetensors(bytes: Uint8Array, source = 'buffer'): { tensors: Record<string, NamedTensor>; metadata: Record<string, string> } {
  const { entries, metadata, dataStart } = parseHeader(bytes, bytes.length, source);
  const tensors: Record<string, NamedTensor> = {};
  for (const [name, { dtype, shape, data_offsets: [begin, end] }] of entries) {
    // A copy per tensor: aligned for its typed array, and it does not pin the whole file.
    // (Not bytes.slice: on a Node Buffer that is a view, not a copy.)
    const own = new Uint8Array(end - begin);
    own.set(bytes.subarray(dataStart + begin, dataStart + end));
    tensors[name] = { dtype, shape: shape.slice(), data: new DTYPES[dtype].array(own.buffer) };
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string): { tensors: Record<string, NamedTensor>; metadata: Record<string, string> } {
  return parseSafetensors(readFileSync(path), path);
}

/** Reads only the header (names, dtypes, shapes, metadata) without loading tensor data. */
export function readSafetensorsHeader(path: string): { entries: Map<string, SafetensorsHeaderEntry>; metadata: Record<string, string> } {
  const fd = openSync(path, 'r');
  try {
    const lengthBytes = Buffer.alloc(8);
    const got = readSync(fd, lengthBytes, 0, 8, 0);
    const size = fstatSync(fd).size;
    if (got < 8) return parseHeader(lengthBytes.subarray(0, got), size, path);
    const declared = lengthBytes.readBigUInt64LE(0);
    const headerLength = declared > BigInt(MAX_HEADER_BYTES) || 8n + declared > BigInt(size) ? 0 : Number(declared);
    const prefix = Buffer.alloc(8 + headerLength);
    lengthBytes.copy(prefix);
    readSync(fd, prefix, 8, headerLength, 8);
    const { entries, metadata } = parseHeader(prefix, size, path);
    return { entries, metadata };
  } finally {
    closeSync(fd);
  }
}

/**
 * Any tensor as float32, for loading checkpoints saved in other precisions. F32 data is returned
 * as is (not copied); F16 and BF16 are widened exactly; F64 and integers are rounded to nearest.
 */
export function toFloat32(t: NamedTensor): Float32Array {
  const { data } = t;
  switch (t.dtype) {
    case 'F32':
      return data as Float32Array;
    case 'BF16': {
      // bfloat16 is the top half of a float32
      const bits = new Uint32Array(data.length);
      const src = data as Uint16Array;
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case 'F16': {
      const src = data as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
      return out;
    }
    case 'F64':
    case 'I32':
      return Float32Array.from(data as Float64Array | Int32Array);
    case 'I64': {
      const src = data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
  }
}
