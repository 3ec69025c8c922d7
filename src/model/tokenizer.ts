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
    try {
      this.tk = new HFTokenizer(json, config);
      this.vocabSize = this.tk.get_vocab(true).size;
    } catch (e) {
      throw new FormatError(where, `could not build the tokenizer: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  /** Token ids of `text`, without special tokens unless asked. */
  encode(text: string, addSpecialTokens = false): number[] {
    return this.tk.encode(text, { add_special_tokens: addSpecialTokens }).ids;
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
