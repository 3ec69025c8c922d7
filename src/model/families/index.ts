/** The architecture registry: model_type -> family. Adding an architecture = one family file + one line here. */
import { UnsupportedModelError } from '../../errors.js';
import { ConfigReader, type ModelConfig } from '../config.js';
import { bloom } from './bloom.js';
import type { Family } from './common.js';
import { falcon } from './falcon.js';
import { gemma } from './gemma.js';
import { gemma2 } from './gemma2.js';
import { gemma3 } from './gemma3.js';
import { gpt2 } from './gpt2.js';
import { gptNeo } from './gpt_neo.js';
import { gptNeox } from './gpt_neox.js';
import { gptj } from './gptj.js';
import { llama, mistral, qwen2 } from './llama.js';
import { mixtral } from './mixtral.js';
import { olmo } from './olmo.js';
import { olmo2 } from './olmo2.js';
import { opt } from './opt.js';
import { phi } from './phi.js';
import { phi3 } from './phi3.js';
import { qwen2Moe } from './qwen2_moe.js';
import { qwen3 } from './qwen3.js';
import { stablelm } from './stablelm.js';
import { starcoder2 } from './starcoder2.js';

export const FAMILIES: Family[] = [
  gpt2, gptNeox, llama, qwen2, mistral,
  gemma, gemma2, gemma3, qwen3, phi, phi3, olmo, olmo2, stablelm, gptj, gptNeo, opt, bloom, falcon, starcoder2, mixtral, qwen2Moe,
];

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
