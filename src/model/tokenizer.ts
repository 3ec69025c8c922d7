/** tokenizer.json (HF `tokenizers` format) through @huggingface/tokenizers. */
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { FormatError } from '../errors.js';

export class Tokenizer {
  private readonly tk: HFTokenizer;
  readonly vocabSize: number;
  constructor(
    readonly json: Record<string, unknown>,
    readonly config: Record<string, unknown> = {},
    readonly where = 'tokenizer.json',
  ) {
    if (!json || typeof json !== 'object' || !json.model || typeof json.model !== 'object') {
      throw new FormatError(where, 'expected a tokenizer.json object with a "model" field');
    }
    checkModel(json.model as Record<string, unknown>, where);
    try {
      // @huggingface/tokenizers has no WordLevel model: it reads unk_token from the tokenizer config only,
      // so a WordLevel model.unk_token would be ignored (unknown words got no id); pass it along
      const m = json.model as Record<string, unknown>;
      const cfg = m.type === 'WordLevel' && typeof m.unk_token === 'string' && config.unk_token === undefined ? { ...config, unk_token: m.unk_token } : config;
      this.tk = new HFTokenizer(json, cfg);
      this.vocabSize = this.tk.get_vocab(true).size;
    } catch (e) {
      throw new FormatError(where, `could not build the tokenizer: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  /** Token ids of `text`, without special tokens unless asked. */
  encode(text: string, addSpecialTokens = false): number[] {
    const ids: number[] = this.tk.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    const bad = ids.findIndex((id: number) => !Number.isInteger(id) || id < 0);
    if (bad >= 0) {
      // the tokenizers library returns undefined for a word it cannot map (e.g. no unk_token)
      throw new FormatError(this.where, `encoding ${JSON.stringify(text.slice(0, 60))} gave no valid id for token ${bad} (found ${JSON.stringify(ids[bad]) ?? 'undefined'}); the vocabulary lacks it and there is no usable unk_token`);
    }
    return ids;
  }
  decode(ids: number[], skipSpecialTokens = false): string {
    return this.tk.decode(ids, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }
  /** The string of each token (decoded one at a time, so byte-level spaces show as spaces). */
  toStrTokens(ids: number[]): string[] {
    return ids.map((id) => this.decode([id]));
  }
  tokenToId(token: string): number | undefined {
    return this.tk.token_to_id(token);
  }
  idToToken(id: number): string | undefined {
    return this.tk.id_to_token(id);
  }
}

const MODEL_TYPES = ['BPE', 'WordPiece', 'WordLevel', 'Unigram'];

/** The @huggingface/tokenizers builder accepts some broken models silently (unknown types, a vocab that is not a map): check them here. */
function checkModel(model: Record<string, unknown>, where: string): void {
  const type = model.type;
  // tokenizer.json files written by old versions may omit model.type for BPE (it is inferred from "merges")
  if (type !== undefined && !MODEL_TYPES.includes(type as string)) {
    throw new FormatError(`${where}: model.type`, `expected one of ${MODEL_TYPES.join(', ')}, found ${JSON.stringify(type)}`);
  }
  const vocab = model.vocab;
  if (type === 'Unigram') {
    if (!Array.isArray(vocab) || vocab.some((e) => !Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number')) {
      throw new FormatError(`${where}: model.vocab`, 'expected an array of [piece, score] pairs for a Unigram model');
    }
    return;
  }
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) {
    throw new FormatError(`${where}: model.vocab`, `expected an object of token -> id, found ${Array.isArray(vocab) ? 'an array' : JSON.stringify(vocab) ?? 'nothing'}`);
  }
  for (const [tok, id] of Object.entries(vocab as Record<string, unknown>)) {
    if (!Number.isInteger(id) || (id as number) < 0) {
      throw new FormatError(`${where}: model.vocab[${JSON.stringify(tok).slice(0, 40)}]`, `expected a non-negative integer id, found ${JSON.stringify(id)}`);
    }
  }
  const unk = model.unk_token;
  if (typeof unk === 'string' && !(unk in (vocab as object))) {
    throw new FormatError(`${where}: model.unk_token`, `${JSON.stringify(unk)} is not in the vocabulary`);
  }
}
