/**
 * Typed errors. Every error names where the problem is (a file, an argument, a field),
 * what was expected and what was found, so a user can fix the input without a stack trace.
 */
export class TflensError extends Error {
  /** File, argument or field the error is about (e.g. "model.safetensors", "config.json: n_head"). */
  readonly where: string;
  constructor(where: string, message: string) {
    super(where ? `${where}: ${message}` : message);
    this.where = where;
    this.name = new.target.name;
  }
}

/** A file's bytes or structure are not what its format requires (safetensors, JSON, NPY...). */
export class FormatError extends TflensError {}
/** A configuration (config.json, options object) lacks a field or holds a wrong value. */
export class ConfigError extends TflensError {}
/** A tensor or array has the wrong rank or size. */
export class ShapeError extends TflensError {}
/** The checkpoint names an architecture tflens does not implement. */
export class UnsupportedModelError extends TflensError {}
/** A TensorFlow.js backend could not be set up or lacks something needed. */
export class BackendError extends TflensError {}
/** A hook name is unknown or a hook misbehaved. */
export class HookError extends TflensError {}
/** A value is out of its allowed range (token ids, positions, thresholds...). */
export class ValueError extends TflensError {}
/** Network or file-system access failed (hub downloads, missing files). */
export class ResolveError extends TflensError {}

/** Short expected/found formatting used across the code base. */
export function expectedFound(expected: unknown, found: unknown): string {
  return `expected ${fmt(expected)}, found ${fmt(found)}`;
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v); // NaN and Infinity stay readable
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}
