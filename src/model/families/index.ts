/** The architecture registry: model_type -> family adapter. Adding an architecture = one file + one line here. */
import { UnsupportedModelError } from '../../errors.js';
import { ConfigReader, type ModelConfig } from '../config.js';
import type { Family } from './common.js';
import { gpt2 } from './gpt2.js';
import { gptNeox } from './gpt_neox.js';
import { llama, mistral, qwen2 } from './llama.js';

export const FAMILIES: Family[] = [gpt2, gptNeox, llama, qwen2, mistral];

export function familyFor(modelType: string, where: string): Family {
  const f = FAMILIES.find((x) => x.modelTypes.includes(modelType));
  if (!f) {
    throw new UnsupportedModelError(
      `${where}: model_type`,
      `architecture "${modelType}" is not supported; supported: ${FAMILIES.flatMap((x) => x.modelTypes).join(', ')}`,
    );
  }
  return f;
}

/** Normalise an HF config.json object into a ModelConfig; errors name `where` and the field. */
export function normalizeConfig(json: unknown, where = 'config.json'): ModelConfig {
  const r = new ConfigReader(json as Record<string, unknown>, where);
  const type = r.str('model_type');
  return familyFor(type, where).normalize(r);
}

export type { Family };
export { WeightSource } from './common.js';
